"""A frozen T5 encoder from a local directory: Stable Audio Open's text encoder (t5-base, 768 wide, 128 tokens).

As stable-audio-tools' ``T5Conditioner``: prompts are tokenized to exactly ``max_length`` tokens (padded, longer
ones truncated), encoded with the attention mask, and the embeddings at padded positions are set to zero; the mask
is returned with them. The T5 weights are frozen, stay in eval mode, and are kept out of the module tree, so they
are neither trained nor saved in our checkpoints (``state_dict()`` is empty); ``.to()`` / ``.half()`` still move
them. Nothing is downloaded: the directory must hold ``config.json``, the weights and the tokenizer files, e.g. a
``save_pretrained`` copy of ``google-t5/t5-base`` (or the ``text_encoder/`` + ``tokenizer/`` folders of a diffusers
Stable Audio Open download, with ``tokenizer_path`` pointing at its ``tokenizer/``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from wavefoundry.conditioning.tokenizer import MAX_CHARS, check_prompts

logger = logging.getLogger(__name__)

#: Stable Audio Open's T5 token budget.
T5_MAX_LENGTH = 128


def _missing_files(path: Path, tokenizer_path: Path) -> list[str]:
    missing = [] if (path / "config.json").is_file() else [str(path / "config.json")]
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        missing.append(str(path / "model.safetensors"))
    if not any((tokenizer_path / f).is_file() for f in ("tokenizer.json", "spiece.model")):
        missing.append(f"{tokenizer_path}/tokenizer.json (or spiece.model)")
    return missing


class T5TextEncoder(nn.Module):
    """Strings -> (T5 last hidden states zeroed on padding, mask), with frozen weights from a local directory.

    Args:
        path: local directory with a T5 encoder (``T5EncoderModel``) and, by default, its tokenizer.
        tokenizer_path: the tokenizer's directory, when it is not ``path``.
        max_length: tokens per prompt (padded and truncated to it); 128 as Stable Audio Open.
        max_chars: longest prompt accepted, in characters.

    Raises:
        FileNotFoundError: the directory or one of its files is missing; the message names the path.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        tokenizer_path: str | Path | None = None,
        max_length: int = T5_MAX_LENGTH,
        max_chars: int = MAX_CHARS,
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer, T5EncoderModel  # optional dependency, needed only for this encoder

        path = Path(path).expanduser()
        tokenizer_path = path if tokenizer_path is None else Path(tokenizer_path).expanduser()
        for where in (path, tokenizer_path):
            if not where.is_dir():
                raise FileNotFoundError(f"T5 directory not found: {where} (save t5-base there with save_pretrained)")
        missing = _missing_files(path, tokenizer_path)
        if missing:
            raise FileNotFoundError(f"T5 files missing: {', '.join(missing)}")
        try:
            model = T5EncoderModel.from_pretrained(str(path), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(f"could not load a T5 encoder and tokenizer from {path}: {exc}") from exc
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        # Kept in __dict__, not as a child module: frozen weights stay out of state_dict, optimisers and train().
        self.__dict__["t5"] = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.path = path
        self.max_length = max_length
        self.max_chars = max_chars
        self.out_dim: int = model.config.d_model

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> T5TextEncoder:
        # .to(), .cuda(), .half() all go through _apply: move the hidden T5 with us.
        self.__dict__["t5"]._apply(fn)
        return super()._apply(fn, recurse)

    def forward(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """B prompts -> embeddings (B, max_length, d_model) float32, zero on padding, and mask (B, max_length) bool.

        Raises:
            ValueError: an empty batch, an empty prompt or one over ``max_chars`` characters.
        """
        prompts = check_prompts(prompts, self.max_chars)
        lengths = [len(ids) for ids in self.tokenizer(prompts, truncation=False)["input_ids"]]
        long = [i for i, n in enumerate(lengths) if n > self.max_length]
        if long:
            logger.warning("prompts %s have more than %d T5 tokens; truncating", long[:5], self.max_length)
        batch = self.tokenizer(
            prompts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        t5 = self.__dict__["t5"]
        device = next(t5.parameters()).device
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device).bool()  # (B, L)
        with torch.no_grad():
            h = t5(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, L, D)
        return h.float() * mask[..., None], mask
