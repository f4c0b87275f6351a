"""``wavefoundry train PRESET [--set k=v ...] [--out RUN] [--resume]``: train a preset with the engine.

Under ``torchrun --nproc_per_node N -m wavefoundry.cli train ... --set train.strategy=ddp|fsdp`` the same command
trains on N processes.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("wavefoundry")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a preset", description=__doc__)
    p.add_argument("preset", nargs="?", help="preset name (see --list)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optim.lr=3e-4 (repeatable)")  # fmt: skip
    p.add_argument("--out", type=Path, help="run directory (default runs/PRESET)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--until", type=int, help="stop after this step with a checkpoint (resume continues)")
    p.add_argument("--list", action="store_true", help="list presets and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def resolve_config(preset: str | None, overrides: list[str], run_dir: Path, resume: bool):
    """The run config: the saved ``config.json`` of a resumed run, else the preset; then the overrides."""
    from wavefoundry.config import ConfigError, apply_overrides
    from wavefoundry.presets import get_preset
    from wavefoundry.train.tasks import load_run_config

    saved = run_dir / "config.json"
    if resume and saved.is_file():
        config = load_run_config(saved)
        if preset:
            expected = get_preset(preset).task
            if expected != config.task:
                raise ConfigError(f"{saved} is a '{config.task}' run, not a '{expected}' one (preset {preset})")
    elif preset:
        config = get_preset(preset)
    else:
        raise ConfigError("name a preset (wavefoundry train --list shows them)")
    return apply_overrides(config, overrides)


def run(args: argparse.Namespace) -> int:
    from wavefoundry.config import to_dict
    from wavefoundry.presets import PRESETS
    from wavefoundry.train.engine import describe, train
    from wavefoundry.train.tasks import build_task

    if args.list:
        for name, fn in sorted(PRESETS.items()):
            print(f"{name:16s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    run_dir = args.out or Path("runs") / (args.preset or "run")
    config = resolve_config(args.preset, args.overrides, run_dir, args.resume)
    if args.print_config:
        print(json.dumps(to_dict(config), indent=2))
        return 0
    result = train(build_task(config), run_dir, resume=args.resume, until=args.until)
    print(json.dumps(describe(result), indent=2))
    return 0
