"""Task "lm": a SODA-style discrete audio language model (Manakul et al. 2026, arXiv 2602.16687).

A Qwen3-style :class:`~wavefoundry.lm.decoder.Decoder` learns next-token prediction over one vocabulary of text ids,
4 specials and codec ids (``lm/sequences.py``), on utterance documents (text-first and audio-first, optionally
text-only) packed into rows (``train/lm_data.py``). Loss: cross-entropy + z-loss (PaLM, Chowdhery et al. 2022).
Metrics: ``nll`` (all counted targets), ``nll_text`` / ``nll_audio`` / ``nll_special`` (targets that are text ids,
audio ids, or specials), their token counts, ``z_loss`` and ``tokens``. The eval set is the held-out split: held-out
NLL per modality. ``model.vocab_size`` and ``data.text_vocab_size`` are derived from the corpus and written into the
run config. See docs/audio_lm.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.config import ConfigError
from wavefoundry.lm.decoder import Decoder, DecoderConfig, lm_tiny, next_token_loss
from wavefoundry.lm.sequences import SPECIAL_TOKENS, TokenLayout
from wavefoundry.train.engine import TrainConfig
from wavefoundry.train.lm_data import (
    Corpus,
    LMDataConfig,
    MixConfig,
    PackedRowDataset,
    corpus_dir,
    eval_rows,
    prepare_corpus,
    train_rows,
)
from wavefoundry.train.optim import OptimConfig
from wavefoundry.train.schedules import ScheduleConfig
from wavefoundry.train.tasks import RunConfig, Task, register

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class LMRunConfig(RunConfig):
    task: str = "lm"
    model: DecoderConfig = field(default_factory=lm_tiny)
    data: LMDataConfig = field(default_factory=LMDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="cautious_adamw", weight_decay=0.1))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="wsd", warmup_steps=100))
    z_loss: float = 1e-4

    def __post_init__(self) -> None:
        if self.z_loss < 0:
            raise ConfigError(f"z_loss must be >= 0, got {self.z_loss}")
        if self.data.seq_len > self.model.max_seq_len:
            raise ConfigError(f"data.seq_len={self.data.seq_len} exceeds model.max_seq_len={self.model.max_seq_len}")


def modality_nll(logits: Tensor, labels: Tensor, mask: Tensor, text_vocab_size: int) -> dict[str, Tensor]:
    """Mean NLL and token count of counted targets by modality: text ids, audio ids, and the specials/others.

    ``sum_m nll_m * tokens_m / sum_m tokens_m`` is the overall mean NLL.

    Args:
        logits: (B, L, V); labels: (B, L) int64; mask: (B, L) bool, True = counted.
        text_vocab_size: ids below it are text, ids from ``text_vocab_size + 4`` on are audio.
    """
    with torch.no_grad():
        nll = F.cross_entropy(logits.detach().flatten(0, 1).float(), labels.flatten(), reduction="none")
        nll = nll.view(labels.shape)  # (B, L)
        audio_offset = text_vocab_size + len(SPECIAL_TOKENS)
        groups = {"text": labels < text_vocab_size, "audio": labels >= audio_offset}
        groups["special"] = ~(groups["text"] | groups["audio"])
        out = {}
        for name, sel in groups.items():
            sel = sel & mask
            n = sel.sum().float()
            out[f"nll_{name}"] = (nll * sel).sum() / n.clamp(min=1.0)
            out[f"tokens_{name}"] = n
        return out


@register
class LMTask(Task):
    name = "lm"
    Config = LMRunConfig

    def __init__(self, config: LMRunConfig) -> None:
        super().__init__(config)
        self._corpus: Corpus | None = None

    def prepare_data(self) -> None:
        prepare_corpus(self.config.data, progress=self.config.train.progress)

    def corpus(self) -> Corpus:
        if self._corpus is None:
            corpus = Corpus.load(corpus_dir(self.config.data))
            self._resolve_vocab(corpus.layout(self.config.data.codebooks))
            self._corpus = corpus
        return self._corpus

    def layout(self) -> TokenLayout:
        """The token layout of the corpus and ``data.codebooks``."""
        return self.corpus().layout(self.config.data.codebooks)

    def _resolve_vocab(self, layout: TokenLayout) -> None:
        """Write the derived sizes into a fresh config; a saved config must agree with the corpus."""
        data, model = self.config.data, self.config.model
        if data.text_vocab_size == 0:
            data.text_vocab_size, model.vocab_size = layout.text_vocab_size, layout.vocab_size
            log.info("vocabulary: %d text + 4 specials + %d audio ids = %d", layout.text_vocab_size,
                     layout.audio_vocab_size, layout.vocab_size)  # fmt: skip
        elif (data.text_vocab_size, model.vocab_size) != (layout.text_vocab_size, layout.vocab_size):
            raise ConfigError(
                f"the run config has data.text_vocab_size={data.text_vocab_size}, model.vocab_size="
                f"{model.vocab_size} but the corpus layout gives {layout.text_vocab_size}, {layout.vocab_size}"
            )

    def build_model(self) -> nn.Module:
        if self.config.data.text_vocab_size == 0 or corpus_dir(self.config.data).is_dir():
            self.corpus()  # derives (fresh run) or checks (saved config) the vocabulary size
        return Decoder(self.config.model)

    def datasets(self) -> tuple[PackedRowDataset, PackedRowDataset | None]:
        corpus, layout = self.corpus(), self.layout()
        train = train_rows(layout, corpus.utterances("train"), self.config.data, seed=self.config.train.seed)
        held_out = corpus.utterances("valid")
        valid = PackedRowDataset(eval_rows(layout, held_out, self.config.data)) if held_out else None
        return PackedRowDataset(train), valid

    def loss_fn(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        logits = model(batch["inputs"])  # (B, L, V)
        loss, metrics = next_token_loss(logits, batch["labels"], loss_mask=batch["mask"], z_loss=self.config.z_loss)
        text_vocab = self.config.data.text_vocab_size
        return loss, {**metrics, **modality_nll(logits, batch["labels"], batch["mask"], text_vocab)}


def lm_speech_tiny() -> LMRunConfig:
    """A CPU-trainable speech LM, the recipe of ``models/lm-speech-tiny``: the ``lm_tiny`` decoder over the
    semantic codebook 0 only, rows of 1,024 tokens, text-first/audio-first 50/50, 3,000 steps of 8 rows in bf16.

    Needs ``--set data.manifest=PATH data.codec=DIR`` (a speech manifest with transcripts and an exported
    semantic codec, e.g. ``semantic-codec-tiny-ft``'s).
    """
    return LMRunConfig(
        model=lm_tiny(),
        data=LMDataConfig(seq_len=1024, codebooks=(0,), bpe_vocab_size=512, epochs=20.0, mix=MixConfig()),
        train=TrainConfig(steps=3000, batch_size=8, precision="bf16", eval_every=500, ckpt_every=250, log_every=25),
        optim=OptimConfig(name="cautious_adamw", lr=3e-3, weight_decay=0.1),
        schedule=ScheduleConfig(name="wsd", warmup_steps=100, decay_fraction=0.2),
    )
