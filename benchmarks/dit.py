"""Benchmark: one forward of the Stable Audio Open DiT, ours against diffusers' StableAudioDiTModel.

    .venv/bin/python benchmarks/dit.py [--small] [--seconds 10 47] [--batch 2] [--repeats 3] [--threads N]
                                       [--dtypes fp32 bf16]

Both models hold the same random weights (diffusers' init, loaded into ours through
``wavefoundry.formats.sao_dit.dit_from_diffusers``) and see the same inputs: batch 2 (a CFG pair), latents for
the given seconds at Stable Audio Open's latent rate 44100 / 2048 Hz (10 s -> 216 frames, 47 s -> 1013; the
released model always runs 1024), 130 conditioning tokens (128 T5 tokens + 2 timing tokens) and a global
vector. diffusers gets its rotary tables precomputed, as its pipeline does; ours builds them in the forward.
fp32 runs under ``torch.inference_mode``, bf16 adds ``torch.autocast("cpu", torch.bfloat16)`` for both.
Runs alternate between the two so that load on a shared machine hits both alike; the table shows medians, the
ratio diffusers / ours (> 1: ours is faster) and the largest |difference| of the outputs.

The full preset (``dit_sao``, 1.06 B parameters) needs about 8.5 GB for both fp32 copies and takes seconds per
forward on CPU; ``--small`` runs ``dit_small`` instead. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time

import torch

from wavefoundry.diffusion.dit import DiT, DiTConfig, dit_sao, dit_small
from wavefoundry.formats.sao_dit import config_to_diffusers, dit_from_diffusers

SAMPLE_RATE, HOP = 44100, 2048  # Stable Audio Open's audio rate and autoencoder hop
COND_TOKENS = 130


def build_pair(cfg: DiTConfig, seed: int = 0):
    """(diffusers StableAudioDiTModel, our DiT) with the same random weights."""
    from diffusers import StableAudioDiTModel

    torch.manual_seed(seed)
    ref = StableAudioDiTModel(**{k: v for k, v in config_to_diffusers(cfg).items() if not k.startswith("_")})
    ours = DiT(cfg)
    ours.load_state_dict(dit_from_diffusers(ref.state_dict(), cfg))
    return ref.eval(), ours.eval()


def inputs(cfg: DiTConfig, batch: int, frames: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "x": torch.randn(batch, cfg.io_channels, frames, generator=g),
        "t": torch.rand(batch, generator=g),
        "cross": torch.randn(batch, COND_TOKENS, cfg.cond_token_dim, generator=g),
        "global_cond": torch.randn(batch, cfg.global_cond_dim, generator=g),
    }


def runners(ref, ours, cfg: DiTConfig, inp: dict[str, torch.Tensor]):
    """Zero-argument callables running diffusers and ours on ``inp``."""
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    frames = inp["x"].shape[-1]
    rope = get_1d_rotary_pos_embed(cfg.head_dim // 2, frames + 1, use_real=True, repeat_interleave_real=False)

    def run_ref():
        return ref(
            inp["x"],
            inp["t"],
            encoder_hidden_states=inp["cross"],
            global_hidden_states=inp["global_cond"][:, None],
            rotary_embedding=rope,
            return_dict=False,
        )[0]

    def run_ours():
        return ours(inp["x"], inp["t"], cross=inp["cross"], global_cond=inp["global_cond"])

    return run_ref, run_ours


def timed(fn) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out.float()


def bench(cfg: DiTConfig, seconds: list[float], dtypes: list[str], batch: int, repeats: int) -> list[tuple]:
    """Rows (dtype, seconds, frames, diffusers median s, ours median s, max |difference|)."""
    ref, ours = build_pair(cfg)
    rows = []
    for dtype in dtypes:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
        for sec in seconds:
            frames = math.ceil(sec * SAMPLE_RATE / HOP)
            run_ref, run_ours = runners(ref, ours, cfg, inputs(cfg, batch, frames))
            t_ref, t_ours, diff = [], [], 0.0
            with torch.inference_mode(), autocast:
                run_ref(), run_ours()  # warm-up
                for _ in range(repeats):
                    t, a = timed(run_ref)
                    t_ref.append(t)
                    t, b = timed(run_ours)
                    t_ours.append(t)
                    diff = max(diff, (a - b).abs().max().item())
            rows.append((dtype, sec, frames, statistics.median(t_ref), statistics.median(t_ours), diff))
            print(f"  {dtype} {sec:g} s done", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="dit_small instead of the full Stable Audio Open DiT")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 47.0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dit_small() if args.small else dit_sao()
    name = "dit_small" if args.small else "dit_sao"
    params = sum(p.numel() for p in DiT(cfg).parameters()) if args.small else 1_056_828_544
    print(f"{name}: {params / 1e6:.1f} M parameters, batch {args.batch}, {torch.get_num_threads()} threads")
    rows = bench(cfg, args.seconds, args.dtypes, args.batch, args.repeats)
    print(f"{'dtype':<6}{'seconds':>8}{'frames':>8}{'diffusers s':>13}{'ours s':>10}{'ratio':>8}{'max |diff|':>12}")
    for dtype, sec, frames, t_ref, t_ours, diff in rows:
        print(f"{dtype:<6}{sec:>8g}{frames:>8}{t_ref:>13.3f}{t_ours:>10.3f}{t_ref / t_ours:>8.2f}{diff:>12.2e}")


if __name__ == "__main__":
    main()
