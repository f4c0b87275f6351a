"""``wavefoundry scaling plan``: compute-optimal N and D for a budget, the budget for a model size, and wall-clock.

    wavefoundry scaling plan --budget 1e21 --law chinchilla --gpu h100 --n-gpus 64 --mfu 0.4
    wavefoundry scaling plan --budget 1e21 --fit runs/isoflop/fit/fit.json [--approach 2|3]
    wavefoundry scaling plan --budget 1e21 --law soda --anchor 3e20,1.7e9      (SODA publishes exponents only)
    wavefoundry scaling plan --model-size 4e9 --tokens 5e11 --law besiroglu --gpu h200 --mfu 0.4
    wavefoundry scaling plan --check-published --mfu 0.4                        (the table in docs/scaling_plan.md)

Laws: chinchilla (Hoffmann et al. 2022, Approach 3), besiroglu (Besiroglu et al. 2024 refit), soda (Manakul et al.
2026: exponents only, give --k-n or --anchor), or --fit (a fit.json of ``wavefoundry scaling fit``). Time on
--n-gpus x --gpu (a100, h100, h200) or a custom --peak-flops at an assumed --mfu: time = C / (n_gpus peak MFU).
See docs/scaling_plan.md.
"""

from __future__ import annotations

import argparse

from wavefoundry.scaling import plan, published


def register(commands: argparse._SubParsersAction) -> None:
    """Adds ``plan`` to the ``scaling`` subcommands."""
    p = commands.add_parser("plan", help="compute-optimal N, D and GPU time for a budget or a model size",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--budget", type=float, help="training budget C in FLOPs: the compute-optimal N and D")
    what.add_argument("--model-size", type=float, help="parameters N: the budget for which N is compute-optimal")
    what.add_argument("--check-published", action="store_true", help="the planner against published runs")
    p.add_argument("--tokens", type=float, help="with --model-size: plan N on this many tokens instead")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--law", default="chinchilla", help=f"built-in law: {', '.join(plan.LAWS)} (default chinchilla)"
    )
    source.add_argument("--fit", help="fit.json written by `wavefoundry scaling fit`")
    p.add_argument("--approach", type=int, choices=(2, 3), help="with --fit: which fit (default 3 if present, else 2)")
    coef = p.add_mutually_exclusive_group()
    coef.add_argument("--k-n", type=float, help="coefficient k_N of N* = k_N C^a (for laws without one, e.g. soda)")
    coef.add_argument("--anchor", help="C,N: a known compute-optimal point the law passes through")
    p.add_argument("--k-d", type=float, help="with --k-n: coefficient k_D of D* = k_D C^b (default: D* = C / 6N*)")
    p.add_argument("--pivot-budget", type=float, help="budget the fitted lines pass through (N*/D* ranges)")
    p.add_argument("--gpu", help=f"accelerator: {', '.join(plan.HARDWARE)}")
    p.add_argument("--peak-flops", type=float, help="custom peak FLOP/s per accelerator (instead of --gpu)")
    p.add_argument("--n-gpus", type=int, default=1, help="number of accelerators (default 1)")
    p.add_argument("--mfu", type=float, help="assumed model-FLOPs utilisation in (0, 1], e.g. 0.4")
    p.add_argument("--flops-per-token", type=float, help="training FLOPs per token of the model (default 6 N)")
    p.set_defaults(func=run_plan)


def _law(args: argparse.Namespace) -> plan.ComputeOptimalLaw:
    if args.approach is not None and args.fit is None:
        raise ValueError("--approach needs --fit")
    law = plan.law_from_fit(args.fit, args.approach) if args.fit else plan.get_law(args.law)
    if args.k_d is not None and args.k_n is None:
        raise ValueError("--k-d needs --k-n")
    if args.k_n is not None:
        law = law.with_coefficients(k_n=args.k_n, k_d=args.k_d)
    elif args.anchor is not None:
        try:
            c0, n0 = (float(x) for x in args.anchor.split(","))
        except ValueError:
            raise ValueError(f"--anchor must be C,N (two numbers), got {args.anchor!r}") from None
        law = law.anchored(c0, n0)
    if args.pivot_budget is not None:
        law = law.with_pivot(args.pivot_budget)
    return law


def _hardware(args: argparse.Namespace) -> plan.HardwareProfile | None:
    if args.gpu is None and args.peak_flops is None:
        if args.mfu is not None:
            raise ValueError("--mfu needs --gpu or --peak-flops")
        return None
    hw = plan.get_hardware(args.gpu, args.peak_flops)
    if args.mfu is None:
        raise ValueError("--gpu/--peak-flops need an assumed --mfu (e.g. 0.4)")
    return hw


def _optimum(law: plan.ComputeOptimalLaw, c: float) -> list[str]:
    """The law's N*, D* at budget c with the formulas, or why it has none."""
    if law.k_n is None:
        return [f"N*, D*: not available: {law.name} publishes exponents only (a = {law.a}, b = {law.b});"
                " pass --k-n K or --anchor C,N"]  # fmt: skip
    n, d = law.n_opt(c), law.d_opt(c)
    lines = [f"N* = k_N C^a = {law.k_n:.4e} x ({c:.3e})^{law.a:.4f} = {n:.3e} parameters"]
    if law.k_d is None:
        lines.append(f"D* = C / ({law.flops_per_param_token:g} N*) = {d:.3e} tokens (the law has no k_D)")
    else:
        lines.append(f"D* = k_D C^b = {law.k_d:.4e} x ({c:.3e})^{law.b:.4f} = {d:.3e} tokens")
    lines.append(f"   {d / n:,.1f} tokens per parameter; 6 N* D* / C = {6 * n * d / c:.3f}")
    if law.loss is not None:
        loss = law.loss
        fitted = f"E {loss.E:g}, A {loss.A:g}, B {loss.B:g}, alpha {loss.alpha:g}, beta {loss.beta:g}"
        lines.append(
            f"   closed form: N* = G (C/6)^a, G = (alpha A / (beta B))^(1/(alpha+beta)) = {loss.g:.4f} ({fitted})"
        )
        lines.append(f"   predicted loss L(N*, D*) = {loss(n, d):.4f}")
    for key, (lo, hi) in law.ranges(c).items():
        ci = law.a_ci if key == "N" else law.b_ci
        lines.append(f"   {key}* range [{lo:.3e}, {hi:.3e}]: exponent in [{ci[0]:.4f}, {ci[1]:.4f}],"
                     f" line turned about C = {law.pivot_budget:.3e}")  # fmt: skip
    if (law.a_ci or law.b_ci) and law.pivot_budget is None:
        lines.append("   no N*/D* range: the exponent intervals need a pivot budget (--pivot-budget)")
    return lines


def _time(flops: float, hw: plan.HardwareProfile | None, args: argparse.Namespace) -> list[str]:
    if hw is None:
        return ["time: pass --gpu (or --peak-flops) and --mfu for wall-clock and GPU-hours"]
    t = plan.training_time(flops, hw, n_gpus=args.n_gpus, mfu=args.mfu)
    return [f"on {args.n_gpus} x {hw.name} (peak {hw.peak_bf16_flops:.3e} FLOP/s dense bf16), MFU {args.mfu:g}:",
            *t.formula().splitlines()]  # fmt: skip


def run_plan(args: argparse.Namespace) -> int:
    if args.check_published:
        print(published.checks_table(published.published_checks(0.4 if args.mfu is None else args.mfu)))
        return 0
    if args.tokens is not None and args.model_size is None:
        raise ValueError("--tokens goes with --model-size")
    law, hw = _law(args), _hardware(args)
    out = [f"law: {law.name} ({law.source})", f"FLOP convention: {law.convention}"]
    if args.budget is not None:
        c = plan.check_positive("--budget", args.budget)
        out += [f"budget C = {c:.3e} FLOPs", *_optimum(law, c)]
        if args.flops_per_token is not None:
            fpt = plan.check_positive("--flops-per-token", args.flops_per_token)
            out.append(f"at {fpt:.3e} FLOPs per token, C buys D = C / {fpt:.3e} = {c / fpt:.3e} tokens")
        flops = c
    else:
        n = plan.check_positive("--model-size", args.model_size)
        out.append(f"model size N = {n:.3e} parameters")
        if law.k_n is not None:
            c_opt = law.budget_for(n)
            out.append(f"budget where N is optimal: C = (N / k_N)^(1/a) = ({n:.3e} / {law.k_n:.4e})^(1/{law.a:.4f})"
                       f" = {c_opt:.3e} FLOPs, D* = {law.d_opt(c_opt):.3e} tokens")  # fmt: skip
        d = args.tokens if args.tokens is not None else (law.d_opt(law.budget_for(n)) if law.k_n else None)
        if d is None:
            raise ValueError(f"law {law.name!r} has no k_N: pass --tokens, --k-n or --anchor")
        flops = plan.training_flops(n, d, args.flops_per_token)
        how = f"{args.flops_per_token:.3e} x D" if args.flops_per_token is not None else "6 N D"
        out.append(f"training FLOPs of N on D = {d:.3e} tokens: {how} = {flops:.3e} ({d / n:,.1f} tokens/param)")
        if args.tokens is not None:
            out += [f"the law at C = {flops:.3e}:", *_optimum(law, flops)]
            if law.k_n is not None:
                out.append(f"   N / N* = {n / law.n_opt(flops):.3f}")
    n_r, d_r = plan.rule_of_thumb(flops)
    out.append(f"rule of thumb (Hoffmann et al. Approaches 1-2, 20 tokens/parameter) at C = {flops:.3e}: "
               f"N = sqrt(C / 120) = {n_r:.3e}, D = 20 N = {d_r:.3e}")  # fmt: skip
    out += _time(flops, hw, args)
    out += [f"note: {note}" for note in law.notes]
    print("\n".join(out))
    return 0
