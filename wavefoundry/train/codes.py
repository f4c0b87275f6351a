"""Encode a manifest with a discrete (RVQ/FSQ) codec into a code set (the data of masked-transformer training)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from wavefoundry.codecs.autoencoder import Autoencoder
from wavefoundry.data.codes import CodeInfo, write_code_set
from wavefoundry.data.datasets import ClipConfig, load_clip_source
from wavefoundry.data.manifest import ManifestItem, read_manifest


@torch.inference_mode()
def _encode_items(model: Autoencoder, items: list[ManifestItem], chunk_seconds: float | None,
                  progress: bool) -> Iterator[np.ndarray]:  # fmt: skip
    clip = ClipConfig(sample_rate=model.sample_rate, channels=model.audio_channels, seconds=1.0)
    for item in tqdm(items, desc="encode", unit="item", disable=not progress):
        audio = torch.from_numpy(load_clip_source(item, clip))[None]  # (1, C, T)
        yield model.encode(audio, chunk_seconds=chunk_seconds).codes[0].numpy()  # (K, L)


def encode_manifest_codes(model: Autoencoder, manifest: str | Path, out_dir: str | Path, *, codec_path: str = "",
                          chunk_seconds: float | None = 10.0, progress: bool = True) -> Path:  # fmt: skip
    """Encode every item of ``manifest`` (resampled/remixed to the codec's format) into codes.

    Args:
        model: a discrete autoencoder in eval mode.
        manifest: manifest.jsonl path.
        out_dir: the code set folder to write (see ``wavefoundry.data.codes``).
        codec_path: recorded in ``codes.json`` so training and generation use the same codec.

    Returns:
        ``out_dir``.
    """
    if not model.is_discrete:
        raise ValueError("a code set needs a discrete (RVQ/FSQ) codec; this one is continuous (VAE)")
    items = read_manifest(manifest)
    if not items:
        raise ValueError(f"{manifest}: no items")
    info = CodeInfo(codec=codec_path, sample_rate=model.sample_rate, channels=model.audio_channels,
                    hop_length=model.hop_length, n_codebooks=model.bottleneck.num_quantizers,
                    codebook_size=model.bottleneck.codebook_size)  # fmt: skip
    return write_code_set(out_dir, items, _encode_items(model.eval(), items, chunk_seconds, progress), info)
