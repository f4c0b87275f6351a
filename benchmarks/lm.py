"""Benchmark: training and cached generation of our Qwen3-style Decoder against transformers' Qwen3ForCausalLM.

    .venv/bin/python benchmarks/lm.py [--small] [--preset soda_135m] [--batch 4] [--seq 512] [--prompt 64]
                                      [--new-tokens 64] [--gen-batch 4] [--repeats 3] [--dtypes fp32 bf16]
                                      [--threads N] [--vocab V]

Both models hold the same random weights (transformers' init, loaded into ours through
``wavefoundry.formats.qwen3.state_from_hf``) and see the same ids.

* train: one step = forward, next-token loss, backward and a fused ``torch.optim.AdamW`` step (each model its own
  optimizer). transformers computes its own loss (``labels=ids``); ours ``next_token_loss`` with its default z-loss
  1e-4. Tokens/s = batch * seq / step time.
* generate: greedy continuation of a (gen-batch, prompt) batch by new-tokens ids: transformers' ``generate`` with
  its DynamicCache against our ``generate`` with the preallocated KVCache, both under ``torch.inference_mode``.
  Tokens/s = gen-batch * new-tokens / time (prefill included). The "same" column says whether the greedy
  outputs agree (in bf16 rounding may make them part ways).

bf16 runs under ``torch.autocast("cpu", torch.bfloat16)`` for both (weights stay fp32, cast at every call);
``bf16w`` generates with both models' weights cast to bf16 and no autocast (the usual way to decode: no weight
casts per step). Runs alternate between
the two models so that load on a shared machine hits both alike; the table shows medians and the ratio
ours / transformers (> 1: ours is faster).

Model FLOPs utilisation (MFU): model FLOPs per token over a matmul peak measured in the same run (a large square
``torch.mm``, best of a few, in each dtype). FLOPs per token follow PaLM (Chowdhery et al. 2022, App. B):
training ``6 N + 12 n_layers H Dh T`` with N the matmul parameters (non-embedding parameters plus the
head's V x D, the embedding lookup is no matmul) and T the sequence length; generation ``2 N + 4 n_layers H Dh c``
with c the mean context. ``--small`` runs ``lm_tiny`` with shorter sequences (under 2 minutes on 2 cores). A
benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable

import torch

from wavefoundry.formats.qwen3 import decoder_config_to_hf, state_from_hf
from wavefoundry.lm.decoder import Decoder, DecoderConfig, decoder_preset, next_token_loss, param_count
from wavefoundry.lm.generate import generate

PEAK_N = 2048  # matmul size for the peak


def build_pair(cfg: DecoderConfig, seed: int = 0):
    """(transformers Qwen3ForCausalLM, our Decoder) with the same random weights."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    fields = {k: v for k, v in decoder_config_to_hf(cfg).items() if k not in ("architectures", "model_type")}
    fields.pop("torch_dtype")
    torch.manual_seed(seed)
    ref = Qwen3ForCausalLM(Qwen3Config(**fields, attn_implementation="sdpa"))
    ours = Decoder(cfg)
    ours.load_state_dict(state_from_hf(ref.state_dict(), cfg))
    return ref, ours


def autocast_for(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def matmul_peak(dtype: str, n: int = PEAK_N, tries: int = 5) -> float:
    """Best FLOP/s of an (n, n) @ (n, n) matmul in ``dtype``."""
    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def matmul_params(cfg: DecoderConfig) -> int:
    """N of the FLOP formulas: non-embedding parameters plus the head (a matmul even when tied)."""
    return param_count(cfg, embeddings=False) + cfg.vocab_size * cfg.dim


def train_flops_per_token(cfg: DecoderConfig, seq: int) -> float:
    return 6 * matmul_params(cfg) + 12 * cfg.n_layers * cfg.n_heads * cfg.dh * seq


def generate_flops_per_token(cfg: DecoderConfig, context: float) -> float:
    return 2 * matmul_params(cfg) + 4 * cfg.n_layers * cfg.n_heads * cfg.dh * context


def train_steps(ref, ours, ids: torch.Tensor) -> dict[str, Callable[[], None]]:
    """Zero-argument callables running one training step of each model on ``ids`` (B, L)."""
    opts = {
        name: torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        for name, model in (("transformers", ref), ("ours", ours))
    }
    targets = torch.cat((ids[:, 1:], ids[:, :1]), dim=1)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[:, -1] = False

    def step_ref() -> None:
        opts["transformers"].zero_grad(set_to_none=True)
        ref(input_ids=ids, labels=ids).loss.backward()
        opts["transformers"].step()

    def step_ours() -> None:
        opts["ours"].zero_grad(set_to_none=True)
        next_token_loss(ours(ids), targets, loss_mask=mask)[0].backward()
        opts["ours"].step()

    return {"transformers": step_ref, "ours": step_ours}


def generators(ref, ours, prompt: torch.Tensor, new_tokens: int, outputs: dict) -> dict[str, Callable[[], None]]:
    """Zero-argument callables continuing ``prompt`` greedily by ``new_tokens`` ids; outputs land in ``outputs``."""

    def gen_ref() -> None:
        outputs["transformers"] = ref.generate(
            prompt,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )

    def gen_ours() -> None:
        outputs["ours"] = generate(ours, prompt, max_new_tokens=new_tokens, temperature=0)

    return {"transformers": gen_ref, "ours": gen_ours}


def timed_medians(run: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per runner after one warm-up call each; calls interleaved across runners."""
    times: dict[str, list[float]] = {name: [] for name in run}
    for fn in run.values():
        fn()
    for _ in range(repeats):
        for name, fn in run.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench(cfg: DecoderConfig, args: argparse.Namespace) -> list[tuple]:
    """Rows (mode, dtype, tokens/s by runner, MFU by runner, same outputs or '-')."""
    ref, ours = build_pair(cfg)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=g)
    prompt = torch.randint(0, cfg.vocab_size, (args.gen_batch, args.prompt), generator=g)
    rows = []
    for dtype in args.dtypes:
        peak = matmul_peak(dtype)
        ref.train(), ours.train()
        with autocast_for(dtype):
            t = timed_medians(train_steps(ref, ours, ids), args.repeats)
        tps = {n: args.batch * args.seq / s for n, s in t.items()}
        mfu = {n: v * train_flops_per_token(cfg, args.seq) / peak for n, v in tps.items()}
        rows.append(("train", dtype, tps, mfu, "-"))
        print(f"  train {dtype} done", file=sys.stderr, flush=True)
        with autocast_for(dtype):
            rows.append(generate_row(ref, ours, prompt, cfg, args, dtype))
    if "bf16" in args.dtypes:  # bf16 weights, no autocast: no per-step weight casts (the usual way to decode)
        rows.append(generate_row(ref.to(torch.bfloat16), ours.to(torch.bfloat16), prompt, cfg, args, "bf16w"))
    return rows


def generate_row(ref, ours, prompt: torch.Tensor, cfg: DecoderConfig, args: argparse.Namespace, dtype: str) -> tuple:
    """The generation row (``dtype`` labels it and picks the matmul peak: fp32's for fp32, else bf16's)."""
    peak = matmul_peak("fp32" if dtype == "fp32" else "bf16")
    outputs: dict = {}
    with torch.inference_mode():
        t = timed_medians(generators(ref.eval(), ours.eval(), prompt, args.new_tokens, outputs), args.repeats)
    tps = {n: args.gen_batch * args.new_tokens / s for n, s in t.items()}
    flops = generate_flops_per_token(cfg, args.prompt + args.new_tokens / 2)
    same = "yes" if torch.equal(outputs["ours"], outputs["transformers"]) else "no"
    print(f"  generate {dtype} done", file=sys.stderr, flush=True)
    return ("generate", dtype, tps, {n: v * flops / peak for n, v in tps.items()}, same)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="lm_tiny and short sequences (< 2 min on 2 cores)")
    parser.add_argument("--preset", default=None, help="decoder preset (default soda_135m, lm_tiny with --small)")
    parser.add_argument("--vocab", type=int, default=None, help="override the preset's vocab_size")
    parser.add_argument("--batch", type=int, default=None, help="training rows (default 4, 8 with --small)")
    parser.add_argument("--seq", type=int, default=None, help="training sequence length (default 512, 256 small)")
    parser.add_argument("--gen-batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=None, help="prompt length (default 64, 32 with --small)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    dtypes_help = "bf16 (autocast) also adds a bf16w generation row"
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"], help=dtypes_help)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batch = args.batch or (8 if args.small else 4)
    args.seq = args.seq or (256 if args.small else 512)
    args.prompt = args.prompt or (32 if args.small else 64)
    name = args.preset or ("lm_tiny" if args.small else "soda_135m")
    cfg = decoder_preset(name)
    if args.vocab:
        cfg = dataclasses.replace(cfg, vocab_size=args.vocab)
    print(
        f"{name}: {param_count(cfg) / 1e6:.1f} M parameters ({param_count(cfg, embeddings=False) / 1e6:.1f} M "
        f"non-embedding), vocab {cfg.vocab_size}, {torch.get_num_threads()} threads; train {args.batch} x {args.seq}, "
        f"generate {args.gen_batch} x ({args.prompt} + {args.new_tokens}); matmul peak fp32 "
        f"{matmul_peak('fp32') / 1e9:.0f}, bf16 {matmul_peak('bf16') / 1e9:.0f} GFLOP/s"
    )
    rows = bench(cfg, args)
    head = ("mode", "dtype", "hf tok/s", "ours tok/s", "ours/hf", "hf MFU", "ours MFU", "same")
    print(f"{head[0]:<10}{head[1]:<6}" + "".join(f"{h:>12}" for h in head[2:]))
    for mode, dtype, tps, mfu, same in rows:
        cells = (
            f"{tps['transformers']:.0f}",
            f"{tps['ours']:.0f}",
            f"{tps['ours'] / tps['transformers']:.2f}",
            f"{100 * mfu['transformers']:.1f}%",
            f"{100 * mfu['ours']:.1f}%",
            same,
        )
        print(f"{mode:<10}{dtype:<6}" + "".join(f"{c:>12}" for c in cells))


if __name__ == "__main__":
    main()
