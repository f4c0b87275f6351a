"""``wavefoundry scaling flops`` (FLOPs per token, three conventions) and ``wavefoundry scaling sweep`` (IsoFLOP).

    wavefoundry scaling flops --preset soda_135m --seq-len 4096 --tokens 500e9
    wavefoundry scaling flops --dim 256 --n-layers 3 --n-heads 2 --ffn-dim 1024 --vocab-size 1100 --seq-len 512
    wavefoundry scaling sweep --budgets 1e13,3e13,1e14 --dims 64,96,128,192,256 --head-ratio 32 \\
        --set data.manifest=M data.codec=C --out runs/isoflop [--plan-only]

See docs/scaling_flops.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

#: Shape flags of ``scaling flops``: flag -> DecoderConfig field.
SHAPE_FLAGS = {
    "dim": "dim", "n_layers": "n_layers", "n_heads": "n_heads", "n_kv_heads": "n_kv_heads", "head_dim": "head_dim",
    "ffn_dim": "ffn_dim", "vocab_size": "vocab_size",
}  # fmt: skip
REQUIRED_WITHOUT_PRESET = ("dim", "n_layers", "n_heads", "ffn_dim", "vocab_size")
#: Rule flags of ``scaling sweep``: flag -> FamilyRule field.
RULE_FLAGS = {
    "layer_base": float, "layer_slope": float, "layer_offset": float, "head_ratio": int, "kv_group": int,
    "head_dim": int, "ffn_mult": float, "min_layers": int, "min_heads": int,
}  # fmt: skip
DEFAULT_DIMS = "64,96,128,192,256"


def register(commands: argparse._SubParsersAction) -> None:
    """Adds ``flops`` and ``sweep`` to the ``scaling`` subcommands."""
    p = commands.add_parser("flops", help="training FLOPs per token of a decoder, three conventions",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--preset", help="decoder preset (soda_135m, soda_600m, soda_1_7b, soda_4b, lm_tiny, lm_micro)")
    for flag in SHAPE_FLAGS:
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=int, help="decoder shape (overrides the preset)")
    p.add_argument("--tie-embeddings", action="store_true", help="the head shares the embedding matrix")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per training row (L)")
    p.add_argument("--tokens", type=_count, help="also give C for this many training tokens (D), e.g. 500e9")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_flops)

    s = commands.add_parser("sweep", help="plan and train an IsoFLOP sweep of the lm task",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    s.add_argument("--budgets", required=True, type=_floats, help="training FLOPs budgets, e.g. 1e13,3e13,1e14")
    s.add_argument("--preset", default="lm-speech-tiny", help="the base run preset (task lm)")
    s.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override base config fields, e.g. --set data.manifest=M data.codec=C")  # fmt: skip
    s.add_argument("--dims", type=_ints, default=_ints(DEFAULT_DIMS), help=f"widths to try (default {DEFAULT_DIMS})")
    s.add_argument("--rule", default="soda", help="family rule: soda (offset 7) or marin (offset 9)")
    for flag, kind in RULE_FLAGS.items():
        s.add_argument(f"--{flag.replace('_', '-')}", dest=f"rule_{flag}", type=kind, metavar=flag.upper(),
                       help="override this field of the rule")  # fmt: skip
    s.add_argument("--convention", default="levanter", help="FLOP convention: levanter, chinchilla or kaplan")
    s.add_argument("--batch-size", type=int, help="sequences per step (default: the preset's train.batch_size)")
    s.add_argument("--tolerance", type=float, default=0.01, help="how far C may land from a budget (default 0.01)")
    s.add_argument("--min-steps", type=int, default=1, help="leave out points with fewer steps")
    s.add_argument("--out", type=Path, default=Path("runs/isoflop"), help="sweep folder (runs/, table.csv)")
    s.add_argument("--plan-only", action="store_true", help="print the points and exit without training")
    s.add_argument("--vocab-size", type=int, help="with --plan-only: plan for this vocabulary, not the corpus's")
    s.set_defaults(func=run_sweep_command)


def _count(text: str) -> int:
    value = float(text)
    if not (math.isfinite(value) and value > 0 and value == int(value)):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


# --- flops ------------------------------------------------------------------------------------------------------


def decoder_from_args(args: argparse.Namespace):
    """The DecoderConfig of ``--preset`` (if any) with the shape flags applied."""
    from wavefoundry.lm.decoder import DecoderConfig, decoder_preset

    given = {field: getattr(args, flag) for flag, field in SHAPE_FLAGS.items() if getattr(args, flag) is not None}
    if args.tie_embeddings:
        given["tie_embeddings"] = True
    if args.preset:
        cfg = dataclasses.replace(decoder_preset(args.preset.replace("-", "_")), **given)
    else:
        missing = [f"--{f.replace('_', '-')}" for f in REQUIRED_WITHOUT_PRESET if f not in given]
        if missing:
            raise ValueError(f"name a --preset or give the shape: missing {', '.join(missing)}")
        cfg = DecoderConfig(**{"n_kv_heads": given["n_heads"], **given})
    return dataclasses.replace(cfg, max_seq_len=max(cfg.max_seq_len, args.seq_len))


def run_flops(args: argparse.Namespace) -> int:
    from wavefoundry.lm.decoder import param_count
    from wavefoundry.scaling.flops import DESCRIPTIONS, all_conventions, forward_flops_breakdown

    cfg = decoder_from_args(args)
    per_token = all_conventions(cfg, args.seq_len)
    breakdown = forward_flops_breakdown(cfg, args.seq_len)
    n, n_nonemb = param_count(cfg), param_count(cfg, embeddings=False)
    if args.json:
        out = {"model": dataclasses.asdict(cfg), "seq_len": args.seq_len, "N": n, "N_nonemb": n_nonemb,
               "flops_per_token": per_token, "forward_breakdown": breakdown}  # fmt: skip
        if args.tokens:
            out.update(tokens=args.tokens, flops={k: v * args.tokens for k, v in per_token.items()})
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"decoder: dim {cfg.dim}, {cfg.n_layers} layers, {cfg.n_heads}/{cfg.n_kv_heads} heads of {cfg.dh}, "
        f"ffn {cfg.ffn_dim}, vocab {cfg.vocab_size}{', tied' if cfg.tie_embeddings else ''}; seq_len {args.seq_len}"
    )
    print(f"N = {n:,} parameters ({n_nonemb:,} non-embedding)")  # fmt: skip
    header = f"{'convention':12s} {'FLOPs/token':>12s}"
    header += f" {'C for D=' + format(args.tokens, '.3g'):>14s}" if args.tokens else ""
    print(f"\n{header}  formula")
    for name, value in per_token.items():
        total = f" {value * args.tokens:>14.4g}" if args.tokens else ""
        print(f"{name:12s} {value:>12.4g}{total}  {DESCRIPTIONS[name]}")
    print("\nanalytic forward FLOPs per token (levanter = 3 x total):")
    for key in ("qkv", "out", "mlp", "attn_scores", "attn_softmax", "attn_values"):
        print(f"  {key:13s} {breakdown[key]:>12,} per layer x {cfg.n_layers}")
    print(f"  {'lm_head':13s} {breakdown['lm_head']:>12,}\n  {'total':13s} {breakdown['total']:>12,}")
    return 0


# --- sweep ------------------------------------------------------------------------------------------------------


def sweep_config_from_args(args: argparse.Namespace, base):
    """The SweepConfig of the flags, with ``base`` (a run config) giving the defaults."""
    from wavefoundry.scaling.isoflop import SweepConfig, family_rule

    rule = family_rule(args.rule)
    fields = {f: getattr(args, f"rule_{f}") for f in RULE_FLAGS if getattr(args, f"rule_{f}") is not None}
    rule = dataclasses.replace(rule, **fields)  # (replace re-runs the rule's validation)
    return SweepConfig(
        budgets=args.budgets,
        dims=args.dims,
        rule=rule,
        convention=args.convention,
        batch_size=args.batch_size or base.train.batch_size,
        seq_len=base.data.seq_len,
        tolerance=args.tolerance,
        min_steps=args.min_steps,
    )


def _print_plan(plan) -> None:
    print(f"{'budget':>9s} {'dim':>5s} {'L':>3s} {'H':>3s} {'N':>11s} {'D':>11s} {'steps':>7s} {'FLOPs':>10s} "
          f"{'off':>7s}  run")  # fmt: skip
    for p in plan.points:
        r = p.row()
        print(f"{p.budget:9.3g} {r['dim']:5d} {r['n_layers']:3d} {r['n_heads']:3d} {r['N']:11,d} {r['D']:11,d} "
              f"{p.steps:7d} {p.flops:10.4g} {r['budget_error']:+7.2%}  {p.name}")  # fmt: skip
    for x in plan.left_out:
        print(f"left out: budget {x.budget:.4g}, d={x.dim}: {x.reason}")


def run_sweep_command(args: argparse.Namespace) -> int:
    from wavefoundry.cli.train import resolve_config
    from wavefoundry.config import ConfigError
    from wavefoundry.scaling.isoflop import plan_sweep, resolve_vocab, run_sweep

    base = resolve_config(args.preset, args.overrides, args.out, resume=False)
    if base.task != "lm":
        raise ConfigError(f"IsoFLOP sweeps train the 'lm' task; preset {args.preset} is task '{base.task}'")
    sweep = sweep_config_from_args(args, base)  # bad flags fail before the corpus is built
    if args.vocab_size is not None:
        if not args.plan_only:
            raise ValueError("--vocab-size is for --plan-only; a sweep takes the vocabulary from its corpus")
        base.model = dataclasses.replace(base.model, vocab_size=args.vocab_size)
    else:
        base = resolve_vocab(base)
    plan = plan_sweep(sweep, base.model)
    _print_plan(plan)
    if args.plan_only:
        return 0
    result = run_sweep(plan, base, args.out, progress=base.train.progress)
    print(f"\n{result.trained} trained, {result.skipped} already done, {len(result.failed)} failed; "
          f"table: {args.out / 'table.csv'}")  # fmt: skip
    for point, reason in result.failed:
        print(f"failed: {point.name}: {reason}")
    return 1 if result.failed else 0
