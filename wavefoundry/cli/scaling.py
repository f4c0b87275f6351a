"""``wavefoundry scaling flops|sweep|fit|plan``: FLOP accounting, IsoFLOP sweeps, scaling-law fits, compute plans.

    wavefoundry scaling flops --preset soda_135m --seq-len 4096
    wavefoundry scaling sweep --budgets 1e13,3e13,1e14,3e14 --out runs/isoflop --set data.manifest=M data.codec=C
    wavefoundry scaling fit runs/isoflop/table.csv --out docs/scaling_study
    wavefoundry scaling plan --budget 1e21 --law soda --gpu h100 --mfu 0.4

See docs/scaling.md.
"""

from __future__ import annotations

import argparse

from wavefoundry.cli import scaling_fit, scaling_flops, scaling_plan

SUBCOMMANDS = (scaling_flops, scaling_fit, scaling_plan)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scaling", help="scaling laws (flops, sweep, fit, plan)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = p.add_subparsers(dest="scaling_command", required=True, metavar="TASK")
    for module in SUBCOMMANDS:
        module.register(commands)
