"""Benchmark: one forward of the Stable Audio Open DiT, ours against diffusers' StableAudioDiTModel.

    .venv/bin/python benchmarks/dit.py [--small] [--seconds 10 47] [--batch 2] [--repeats 3] [--threads N]
                                       [--dtypes fp32 bf16] [--compile]

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

``--compile`` also times both models after :func:`~wavefoundry.diffusion.dit.compile_for_inference` (the same
``torch.compile`` call, weights frozen, for both): a second table gives compiled ours against eager diffusers and
against compiled diffusers, and the compile time of each (the first call per shape, never in the medians).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time

import torch

from wavefoundry.diffusion.dit import DiT, DiTConfig, compile_for_inference, dit_sao, dit_small
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


def bench(cfg: DiTConfig, seconds: list[float], dtypes: list[str], batch: int, repeats: int, compile: bool):
    """Rows (dtype, seconds, frames, medians s by runner name, max |ours - diffusers|, compile s by runner name).

    Runners: ``diffusers`` and ``ours`` (eager), with ``compile`` also ``diffusers.c`` and ``ours.c``.
    """
    ref, ours = build_pair(cfg)
    if compile:
        ref_c, ours_c = compile_for_inference(ref), compile_for_inference(ours)
    rows = []
    for dtype in dtypes:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
        for sec in seconds:
            frames = math.ceil(sec * SAMPLE_RATE / HOP)
            inp = inputs(cfg, batch, frames)
            run = dict(zip(("diffusers", "ours"), runners(ref, ours, cfg, inp), strict=True))
            if compile:
                run.update(zip(("diffusers.c", "ours.c"), runners(ref_c, ours_c, cfg, inp), strict=True))
            times: dict[str, list[float]] = {name: [] for name in run}
            compile_s, diff = {}, 0.0
            with torch.inference_mode(), autocast:
                for name, fn in run.items():  # warm-up; compiles the compiled runners for this shape
                    compile_s[name] = timed(fn)[0]
                for _ in range(repeats):  # interleaved, so that load on a shared machine hits all alike
                    outs = {}
                    for name, fn in run.items():
                        t, outs[name] = timed(fn)
                        times[name].append(t)
                    diff = max(diff, *((outs[n] - outs["diffusers"]).abs().max().item() for n in outs))
            medians = {name: statistics.median(ts) for name, ts in times.items()}
            rows.append((dtype, sec, frames, medians, diff, compile_s))
            print(f"  {dtype} {sec:g} s done", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="dit_small instead of the full Stable Audio Open DiT")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 47.0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="also time both models compiled (frozen weights)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dit_small() if args.small else dit_sao()
    name = "dit_small" if args.small else "dit_sao"
    params = sum(p.numel() for p in DiT(cfg).parameters()) if args.small else 1_056_828_544
    print(f"{name}: {params / 1e6:.1f} M parameters, batch {args.batch}, {torch.get_num_threads()} threads")
    rows = bench(cfg, args.seconds, args.dtypes, args.batch, args.repeats, args.compile)
    print(f"{'dtype':<6}{'seconds':>8}{'frames':>8}{'diffusers s':>13}{'ours s':>10}{'ratio':>8}{'max |diff|':>12}")
    for dtype, sec, frames, t, diff, _ in rows:
        ratio = t["diffusers"] / t["ours"]
        print(f"{dtype:<6}{sec:>8g}{frames:>8}{t['diffusers']:>13.3f}{t['ours']:>10.3f}{ratio:>8.2f}{diff:>12.2e}")
    if args.compile:
        print("compiled (compile_for_inference; compile s = first call, both models; ratios diffusers / ours.c)")
        head = ("dtype", "seconds", "diffusers.c s", "ours.c s", "vs eager", "vs compiled", "compile s")
        print(f"{head[0]:<6}{head[1]:>8}" + "".join(f"{h:>15}" for h in head[2:]))
        for dtype, sec, _, t, _, c in rows:
            cells = (t["diffusers.c"], t["ours.c"], t["diffusers"] / t["ours.c"], t["diffusers.c"] / t["ours.c"])
            comp = f"{c['diffusers.c']:.0f} / {c['ours.c']:.0f}"
            print(f"{dtype:<6}{sec:>8g}" + "".join(f"{x:>15.3f}" for x in cells) + f"{comp:>15}")


if __name__ == "__main__":
    main()
