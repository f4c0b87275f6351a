"""``wavefoundry scaling fit``: Chinchilla Approach 2 and 3 fits of a sweep table, with plots.

    wavefoundry scaling fit runs/isoflop/table.csv --out docs/scaling_study
    wavefoundry scaling fit table.csv --out fit/ --approach 3 --bootstrap 500 --exclude-highest-loss 5
    wavefoundry scaling fit runs/iso-1e12/table.csv runs/iso-1e13/table.csv --out fit/

TABLE is a CSV with at least the columns budget,N,D,loss (others are ignored); several TABLEs are read as one
(e.g. sweeps run with their own widths per budget). Writes DIR/fit.json and the
figures DIR/isoflop.png, DIR/frontier.png (Approach 2) and DIR/parametric.png (Approach 3), and prints a
summary. See docs/scaling_fit.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

APPROACHES = {"2": ("approach2",), "3": ("approach3",), "both": ("approach2", "approach3")}


def register(commands: argparse._SubParsersAction) -> None:
    """Adds ``fit`` to the ``scaling`` subcommands."""
    p = commands.add_parser("fit", help="fit scaling laws (Chinchilla approaches 2 and 3) to a sweep table",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("table", type=Path, nargs="+",
                   help="CSVs with columns budget,N,D,loss (runs/isoflop/table.csv); several are joined")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="folder for fit.json and the PNG figures")
    p.add_argument("--approach", choices=list(APPROACHES), default="both", help="which fits to run (default both)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals (0: none)")
    p.add_argument("--exclude-highest-loss", type=int, default=0, metavar="K",
                   help="leave out the K points with the highest loss before fitting (both approaches)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    """Read the table, run the chosen fits, write fit.json and the figures, print the summary."""
    from tqdm import tqdm

    from wavefoundry.scaling import fit as sf
    from wavefoundry.scaling import plots
    from wavefoundry.scaling.fit_file import ScalingFit, save_fit
    from wavefoundry.scaling.table import read_tables

    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    table = read_tables(args.table).exclude_highest_loss(args.exclude_highest_loss)
    wanted = APPROACHES[args.approach]
    fit = ScalingFit()
    figures: list[Path] = []
    with tqdm(total=2 * len(wanted), desc="scaling fit", unit="step", disable=args.no_progress) as bar:
        if "approach2" in wanted:
            bar.set_postfix_str("approach 2")
            fit.approach2 = sf.fit_approach2(table, sf.Approach2Config(bootstrap=args.bootstrap, seed=args.seed))
            bar.update()
        if "approach3" in wanted:
            bar.set_postfix_str("approach 3 (L-BFGS from 4500 starts)")
            fit.approach3 = sf.fit_approach3(table, sf.Approach3Config(bootstrap=args.bootstrap, seed=args.seed))
            bar.update()
        bar.set_postfix_str("figures")
        path = save_fit(fit, args.out / "fit.json")
        if fit.approach2 is not None:
            figures.append(plots.plot_isoflop(table, fit.approach2, args.out / "isoflop.png"))
            figures.append(plots.plot_frontier(fit.approach2, args.out / "frontier.png", parametric=fit.approach3))
            bar.update()
        if fit.approach3 is not None:
            figures.append(plots.plot_parametric(table, fit.approach3, args.out / "parametric.png"))
            bar.update()
    print(summary(fit, n_points=len(table)))
    print(f"wrote {path}" + "".join(f", {f}" for f in figures))
    return 0


def _ci(values: list[float] | None) -> str:
    return "" if values is None else f" [{values[0]:.3f}, {values[1]:.3f}]"


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def summary(fit, *, n_points: int) -> str:
    """The fit as a short text table (what ``scaling fit`` prints)."""
    lines = [f"{n_points} points"]
    if (a2 := fit.approach2) is not None:
        lines += [f"approach 2: IsoFLOP parabolas, {a2.bootstrap} bootstrap resamples (95% percentile intervals)",
                  f"  {'budget':>10} {'N_opt':>10} {'D_opt':>10} {'loss_min':>9} {'points':>6}  flags"]  # fmt: skip
        for o in a2.optima:
            lines.append(f"  {o.budget:>10.4g} {_g(o.N_opt):>10} {_g(o.D_opt):>10} {_g(o.loss_min):>9} "
                         f"{o.n_points:>6}  {', '.join(o.flags) or '-'}")  # fmt: skip
        lines.append(f"  N* = {a2.k_N:.4g} * C^a  a = {a2.a:.3f}{_ci(a2.a_ci)}")
        lines.append(f"  D* = {a2.k_D:.4g} * C^b  b = {a2.b:.3f}{_ci(a2.b_ci)}")
    if (a3 := fit.approach3) is not None:
        se = a3.se or {}
        lines.append(f"approach 3: L = E + A/N^alpha + B/D^beta, Huber delta {a3.huber_delta:g}, "
                     f"{a3.bootstrap} bootstrap resamples, converged: {'yes' if a3.converged else 'NO'}")  # fmt: skip
        lines.append("  " + "  ".join(f"{k} = {getattr(a3, k):.4g}" + (f" ± {se[k]:.2g}" if k in se else "")
                                      for k in ("E", "A", "B", "alpha", "beta")))  # fmt: skip
        a_se = f" ± {se['a']:.3f}" if "a" in se else ""
        lines.append(f"  a = beta/(alpha+beta) = {a3.a:.3f}{a_se}{_ci((a3.ci or {}).get('a'))}  b = {a3.b:.3f}")
    warnings = (fit.approach2.warnings if fit.approach2 else []) + (fit.approach3.warnings if fit.approach3 else [])
    lines.append(f"{len(warnings)} warning(s)" + (":" if warnings else ""))
    lines += [f"  - {w}" for w in warnings]
    return "\n".join(lines)
