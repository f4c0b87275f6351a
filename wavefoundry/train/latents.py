"""Encode a manifest with a VAE codec into a latent set (the data of latent diffusion training)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from wavefoundry.codecs.autoencoder import Autoencoder
from wavefoundry.data.datasets import ClipConfig, load_clip_source
from wavefoundry.data.latents import LatentInfo, write_latent_set
from wavefoundry.data.manifest import ManifestItem, read_manifest


@torch.inference_mode()
def _encode_items(
    model: Autoencoder, items: list[ManifestItem], chunk_seconds: float | None, progress: bool
) -> Iterator[np.ndarray]:
    clip = ClipConfig(sample_rate=model.sample_rate, channels=model.audio_channels, seconds=1.0)
    for item in tqdm(items, desc="encode", unit="item", disable=not progress):
        audio = torch.from_numpy(load_clip_source(item, clip))[None]  # (1, C, T)
        out = model.encode(audio, chunk_seconds=chunk_seconds, sample=False)
        yield out.latents[0].float().numpy()  # (D, L)


def encode_manifest(
    model: Autoencoder,
    manifest: str | Path,
    out_dir: str | Path,
    *,
    codec_path: str = "",
    chunk_seconds: float | None = 10.0,
    progress: bool = True,
) -> Path:
    """Encode every item of ``manifest`` (resampled/remixed to the codec's format) with the VAE posterior mean.

    Args:
        model: a continuous (VAE) autoencoder in eval mode.
        manifest: manifest.jsonl path.
        out_dir: the latent set folder to write (see ``wavefoundry.data.latents``).
        codec_path: recorded in ``latents.json`` so training and generation use the same codec.

    Returns:
        ``out_dir``.
    """
    if model.is_discrete:
        raise ValueError("latent diffusion needs a continuous (VAE) codec; this one is discrete (RVQ/FSQ)")
    items = read_manifest(manifest)
    if not items:
        raise ValueError(f"{manifest}: no items")
    info = LatentInfo(
        codec=codec_path,
        sample_rate=model.sample_rate,
        channels=model.audio_channels,
        hop_length=model.hop_length,
        latent_dim=model.cfg.oobleck.latent_dim,
        mean=[],
        std=[],
    )
    return write_latent_set(out_dir, items, _encode_items(model.eval(), items, chunk_seconds, progress), info)
