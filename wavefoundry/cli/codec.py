"""``wavefoundry encode|decode|export``: audio <-> latents or codes with a trained autoencoder.

    wavefoundry export runs/codec-tiny --out models/codec-tiny
    wavefoundry encode clip.wav --model models/codec-tiny --out clip.latents.safetensors
    wavefoundry decode clip.latents.safetensors --model models/codec-tiny --out clip.recon.wav

Latents (D, L) or codes (K, L) are stored in a safetensors file with the model's sample rate and the input length.
Long audio is coded in exact overlapping chunks (``--chunk-seconds``) so memory stays bounded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("wavefoundry")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="audio -> latents or codes", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("audio", type=Path, help="an audio file (wav, flac, ogg, mp3)")
    p.add_argument("--model", required=True, type=Path, help="exported autoencoder directory")
    p.add_argument("--out", required=True, type=Path, help="output .safetensors")
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="chunk length (default 10; 0: one pass)")
    p.add_argument("--resample", action="store_true", help="resample/remix to the model's rate and channels")
    p.set_defaults(func=run_encode)

    p = sub.add_parser("decode", help="latents or codes -> audio", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("latents", type=Path, help="a .safetensors file written by `wavefoundry encode`")
    p.add_argument("--model", required=True, type=Path, help="exported autoencoder directory")
    p.add_argument("--out", required=True, type=Path, help="output audio file (.wav, .flac, ...)")
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="chunk length (default 10; 0: one pass)")
    p.set_defaults(func=run_decode)

    p = sub.add_parser("export", help="training run -> model directory for inference", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("run", type=Path, help="run or checkpoint directory")
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA")
    p.set_defaults(func=run_export)


def load_for_codec(path: Path, codec, *, resample: bool):
    """Decode ``path`` and match the codec's rate and channels (or fail naming both)."""
    from wavefoundry.audio.dsp import set_channels
    from wavefoundry.audio.io import load_audio
    from wavefoundry.audio.resample import resample as resample_audio

    audio, sr = load_audio(path)
    if resample:
        audio = resample_audio(set_channels(audio, codec.channels), sr, codec.sample_rate)
        sr = codec.sample_rate
    elif (sr, audio.shape[0]) != (codec.sample_rate, codec.channels):
        raise ValueError(
            f"{path} is {sr} Hz with {audio.shape[0]} channel(s) but the model expects {codec.sample_rate} Hz with "
            f"{codec.channels} channel(s); pass --resample to convert"
        )
    return audio, sr


def run_encode(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import save_file

    from wavefoundry.pipelines import Codec

    codec = Codec.from_pretrained(args.model)
    audio, sr = load_for_codec(args.audio, codec, resample=args.resample)
    z = codec.encode(audio, sr, chunk_seconds=args.chunk_seconds or None)
    key = "codes" if codec.model.is_discrete else "latents"
    meta = {"sample_rate": str(sr), "length": str(audio.shape[1]), "channels": str(audio.shape[0])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: torch.from_numpy(z).contiguous()}, str(args.out), metadata=meta)
    print(f"wrote {key} {tuple(z.shape)} to {args.out}")
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from safetensors import safe_open

    from wavefoundry.audio.io import save_audio
    from wavefoundry.pipelines import Codec

    codec = Codec.from_pretrained(args.model)
    with safe_open(str(args.latents), framework="pt") as fh:
        keys, meta = list(fh.keys()), fh.metadata() or {}
        if len(keys) != 1 or keys[0] not in ("latents", "codes"):
            raise ValueError(f"{args.latents}: expected one tensor named 'latents' or 'codes', found {keys}")
        z = fh.get_tensor(keys[0]).numpy()
    audio = codec.decode(z, chunk_seconds=args.chunk_seconds or None)
    if "length" in meta:
        audio = audio[:, : int(meta["length"])]
    save_audio(args.out, audio, codec.sample_rate)
    print(f"wrote {audio.shape[1] / codec.sample_rate:.2f} s to {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from wavefoundry.pipelines import export_any

    out = export_any(args.run, args.out, ema=not args.no_ema)
    print(f"exported to {out}")
    return 0
