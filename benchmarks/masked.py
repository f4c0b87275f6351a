"""Benchmark: generation latency of the masked transformer (iterative parallel decoding) against an autoregressive
decoder of the same size (``lm/decoder.py`` with its KV cache) for the same audio length and codec shape.

    .venv/bin/python benchmarks/masked.py [--small] [--seconds 10] [--frame-rate 62.5] [--batches 1 8]
                                          [--steps 20 10 10 10] [--repeats 3] [--threads N] [--no-cfg] [--bf16]

Both models have the same width, depth, heads and feed-forward width (the masked one has cross-attention to 20
random text tokens on top); weights are random (latency does not depend on them). For T = seconds x frame rate
frames of K codebooks:

* masked: ``lm/masked_decode.decode`` with steps per codebook (MAGNeT's 20, 10, 10, 10: 50 forwards over all T
  frames), classifier-free guidance as one batched call of 2B rows (``--no-cfg``: B rows);
* AR flat: the decoder generates T x K tokens one by one (all codebooks flattened per frame, as the project's
  audio LM lays them out), prefill of one token, KV cache; with CFG it decodes 2B rows too;
* AR delay: T + K - 1 tokens, the step count of a MusicGen-style delay pattern (K codebooks per step, one embedding
  sum and K heads, whose extra cost is ignored here: a lower bound on that decoder's latency).

The table shows median seconds per batch and the ratio AR / masked (> 1: masked is faster). ``--small`` runs the
``masked_tiny`` shape on 4 s. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time

import torch

from wavefoundry.lm.decoder import Decoder, DecoderConfig
from wavefoundry.lm.decoder import param_count as decoder_params
from wavefoundry.lm.generate import generate
from wavefoundry.lm.masked import MaskedConfig, MaskedTransformer, masked_tiny, param_count
from wavefoundry.lm.masked_decode import DecodeConfig, GuidedLogits, decode


def build(small: bool, frames: int) -> tuple[MaskedTransformer, Decoder]:
    """The masked model and an AR decoder of the same width, depth, heads and FFN (kv heads = heads)."""
    cfg = masked_tiny() if small else MaskedConfig(dim=512, n_layers=12, n_heads=8, ffn_dim=1536, cond_dim=128)
    cfg.max_frames = max(cfg.max_frames, frames)
    cfg = MaskedConfig(**cfg.__dict__)
    K, V = cfg.n_codebooks, cfg.codebook_size
    ar = DecoderConfig(vocab_size=K * V + 4, dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                       n_kv_heads=cfg.n_heads, ffn_dim=cfg.ffn_dim, max_seq_len=frames * K + 8)  # fmt: skip
    torch.manual_seed(0)
    return MaskedTransformer(cfg).eval(), Decoder(ar).eval()


def time_masked(model: MaskedTransformer, batch: int, frames: int, steps: tuple[int, ...], cfg: bool) -> float:
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(batch, 20, model.cfg.cond_dim, generator=g)
    fn = GuidedLogits(model, ctx, None, torch.zeros_like(ctx), None)
    codes = torch.zeros(batch, model.cfg.n_codebooks, frames, dtype=torch.long)
    known = torch.zeros_like(codes, dtype=torch.bool)
    dcfg = DecodeConfig(steps=steps, cfg_max=3.0 if cfg else 1.0, cfg_min=3.0 if cfg else 1.0)
    start = time.perf_counter()
    decode(fn, codes, known, dcfg, mask_id=model.cfg.mask_id, generator=g)
    return time.perf_counter() - start


def time_ar(model: Decoder, batch: int, tokens: int, cfg: bool) -> float:
    prompt = torch.zeros(2 * batch if cfg else batch, 1, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    generate(model, prompt, max_new_tokens=tokens, temperature=1.0, top_p=0.9, generator=g)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="masked_tiny shape, 4 s")
    parser.add_argument("--seconds", type=float, default=None, help="audio length (default 10, --small 4)")
    parser.add_argument("--frame-rate", type=float, default=62.5, help="codec frames per second (codec-tiny-rvq)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 10, 10, 10], help="masked steps per codebook")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-cfg", action="store_true", help="no classifier-free guidance (B rows, not 2B)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for both models")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seconds = args.seconds or (4.0 if args.small else 10.0)
    frames = math.ceil(seconds * args.frame_rate)
    masked, ar = build(args.small, frames)
    K = masked.cfg.n_codebooks
    if len(args.steps) != K:
        parser.error(f"--steps needs {K} values (one per codebook), got {args.steps}")
    cfg = not args.no_cfg
    c = masked.cfg
    print(f"shape: width {c.dim} x {c.n_layers} layers, {c.n_heads} heads, FFN {c.ffn_dim}; {K} codebooks x "
          f"{c.codebook_size}; {seconds:g} s = {frames} frames; masked {param_count(c) / 1e6:.1f} M params, AR "
          f"{decoder_params(ar.cfg) / 1e6:.1f} M; steps {args.steps}; CFG {'on' if cfg else 'off'}; "
          f"threads {torch.get_num_threads()}; {'bf16' if args.bf16 else 'fp32'}")  # fmt: skip
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    runs = {
        "masked": lambda b: time_masked(masked, b, frames, tuple(args.steps), cfg),
        "AR flat": lambda b: time_ar(ar, b, frames * K, cfg),
        "AR delay": lambda b: time_ar(ar, b, frames + K - 1, cfg),
    }
    print("\n| batch | masked s | AR flat s | AR delay s | AR flat / masked | AR delay / masked |")
    print("|---|---|---|---|---|---|")
    with torch.inference_mode(), amp:
        for b in args.batches:
            times = {name: [] for name in runs}
            for _ in range(args.repeats):  # alternate, so machine load hits all alike
                for name, fn in runs.items():
                    times[name].append(fn(b))
            med = {name: statistics.median(t) for name, t in times.items()}
            print(f"| {b} | {med['masked']:.2f} | {med['AR flat']:.2f} | {med['AR delay']:.2f} | "
                  f"{med['AR flat'] / med['masked']:.2f} | {med['AR delay'] / med['masked']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
