"""A tiny random T5 encoder and an offline WordLevel tokenizer, saved to a directory: the T5 fixture shared by the
conditioning, formats and pipeline tests (nothing is downloaded)."""

from pathlib import Path

import torch

WORDS = ["a", "an", "the", "rock", "drum", "beat", "bpm", "rain", "loud", "soft", "pink", "noise", "organ", "chord"]
WORDS += ["note", "at", "on", ",", ".", *"0123456789"]


def make_tiny_t5(directory: Path, *, d_model: int = 32, split_tokenizer: bool = False) -> Path:
    """Save a random 2-layer T5 encoder (d_model 32) and a WordLevel tokenizer (appends </s>) to ``directory``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(directory / "tokenizer" if split_tokenizer else directory)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(vocab), d_model=d_model, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    T5EncoderModel(cfg).save_pretrained(directory)
    return directory
