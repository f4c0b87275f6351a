"""Build the embedders of ``wavefoundry eval fd|kl|clap|memorization`` by name, from local weights only.

======================  =====================  ==========================================================
name                    kind                   ``--weights``
======================  =====================  ==========================================================
``synthcaps``           frames, classifier     a tagger run or export (default ``models/eval-tagger``)
``synthcaps``           text-audio             a contrastive run or export (default ``models/eval-clap``)
``openl3``              frames                 ``openl3_audio_mel256_music.h5`` (or our safetensors)
``passt``               classifier, frames     the PaSST-S checkpoint (``passt-s-f128-p16-s10-ap.476-swa.pt``)
``laion-clap``          text-audio             a Hugging Face ClapModel folder (e.g. ``clap-htsat-unfused``)
======================  =====================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from wavefoundry.eval.embedders import AudioClassifier, FrameEmbedder, TextAudioModel, file_sha256

DEFAULT_TAGGER = Path("models/eval-tagger")
DEFAULT_CLAP = Path("models/eval-clap")


def _need(weights: Path | None, name: str, example: str) -> Path:
    if weights is None:
        raise ValueError(f"embedder {name!r} needs --weights (for example {example}); nothing is downloaded")
    if not weights.exists():
        raise FileNotFoundError(f"--weights {weights} does not exist")
    return weights


def _default(weights: Path | None, default: Path, what: str) -> Path:
    path = weights or default
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist (the default is {default}: run from the repository)")
    return path


def _weights_hash(path: Path) -> str:
    return file_sha256(path / "model.safetensors" if (path / "model.safetensors").is_file() else path)


def _tagger(weights: Path | None):
    from wavefoundry.train.contrastive import load_tagger

    path = _default(weights, DEFAULT_TAGGER, "tagger")
    return load_tagger(path), _weights_hash(path)


def _synthcaps_frames(weights: Path | None, **_) -> FrameEmbedder:
    from wavefoundry.eval.synthcaps_embedders import TaggerEmbedder

    model, sha = _tagger(weights)
    return TaggerEmbedder(model, weights_sha256=sha)


def _synthcaps_classifier(weights: Path | None, **_) -> AudioClassifier:
    from wavefoundry.eval.synthcaps_embedders import TaggerClassifier

    model, sha = _tagger(weights)
    return TaggerClassifier(model, weights_sha256=sha)


def _openl3(weights: Path | None, *, channel_mode: str | None = None, **_) -> FrameEmbedder:
    from wavefoundry.eval.openl3 import load_openl3

    path = _need(weights, "openl3", "openl3_audio_mel256_music.h5")
    return load_openl3(path, **({"channel_mode": channel_mode} if channel_mode else {}))


def _passt(weights: Path | None, *, labels_csv: Path | None = None, **_) -> AudioClassifier:
    from wavefoundry.eval.passt import load_passt

    return load_passt(_need(weights, "passt", "passt-s-f128-p16-s10-ap.476-swa.pt"), labels_csv=labels_csv)


def _passt_frames(weights: Path | None, *, labels_csv: Path | None = None, **_) -> FrameEmbedder:
    from wavefoundry.eval.passt import PaSSTEmbedder

    return PaSSTEmbedder(_passt(weights, labels_csv=labels_csv))


def _synthcaps_text_audio(weights: Path | None, **_) -> TextAudioModel:
    from wavefoundry.eval.synthcaps_embedders import ContrastiveTextAudio
    from wavefoundry.train.contrastive import load_contrastive

    path = _default(weights, DEFAULT_CLAP, "text-audio model")
    model, tokenizer = load_contrastive(path)
    return ContrastiveTextAudio(model, tokenizer, weights_sha256=_weights_hash(path))


def _laion_clap(weights: Path | None, **_) -> TextAudioModel:
    from wavefoundry.eval.laion_clap import load_laion_clap

    return load_laion_clap(_need(weights, "laion-clap", "a local clap-htsat-unfused folder"))


FRAME_EMBEDDERS: dict[str, Callable[..., FrameEmbedder]] = {
    "synthcaps": _synthcaps_frames,
    "openl3": _openl3,
    "passt": _passt_frames,
}
CLASSIFIERS: dict[str, Callable[..., AudioClassifier]] = {"synthcaps": _synthcaps_classifier, "passt": _passt}
TEXT_AUDIO_MODELS: dict[str, Callable[..., TextAudioModel]] = {
    "synthcaps": _synthcaps_text_audio,
    "laion-clap": _laion_clap,
}


def build(table: dict[str, Callable], name: str, weights: Path | None, **options):
    """The embedder ``name`` of ``table`` loaded from ``weights``; an unknown name lists the valid ones."""
    if name not in table:
        raise ValueError(f"unknown embedder {name!r}; valid: {', '.join(table)}")
    return table[name](weights, **options)
