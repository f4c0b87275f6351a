"""``wavefoundry demo``: the main job on built-in data: SynthCaps -> train the tagger -> per-class report.

Generates SynthCaps (cached under data/cache), trains the ``tagger-tiny`` preset into ``runs/demo`` (resuming a
previous, unfinished demo run), and prints validation accuracy per class. Run again, it only re-evaluates.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="SynthCaps + training engine demo (a few minutes on CPU)", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (default runs/demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the tagger-tiny preset")  # fmt: skip
    p.set_defaults(func=run)


def per_class_report(task, model, dataset) -> dict:
    """Accuracy per label over a labelled clip dataset."""
    import torch

    labels = task.config.model.labels
    hits: dict[str, list[int]] = {name: [0, 0] for name in labels}
    with torch.no_grad():
        for start in range(0, len(dataset), 64):
            batch = task.collate([dataset[(i, i)] for i in range(start, min(start + 64, len(dataset)))])
            pred = model(batch["audio"]).argmax(-1)
            for p, y in zip(pred.tolist(), batch["label"].tolist()):
                hits[labels[y]][0] += int(p == y)
                hits[labels[y]][1] += 1
    per_class = {k: {"accuracy": round(h / n, 3), "n": n} for k, (h, n) in hits.items() if n}
    total = sum(h for h, _ in hits.values()) / max(1, sum(n for _, n in hits.values()))
    return {"accuracy": round(total, 4), "n_items": len(dataset), "per_class": per_class}


def run(args: argparse.Namespace) -> int:
    from wavefoundry.cli.train import resolve_config
    from wavefoundry.train import checkpoint as ckpt
    from wavefoundry.train.engine import train
    from wavefoundry.train.tasks import build_task, load_model

    resume = ckpt.latest_checkpoint(args.out) is not None
    config = resolve_config("tagger-tiny", args.overrides, args.out, resume)
    result = train(build_task(config), args.out, resume=resume)
    task, model = load_model(args.out)
    _, valid = task.datasets()
    report = {"run_dir": str(args.out), "step": result.step, **per_class_report(task, model, valid)}
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nSynthCaps tagger after {result.step} steps: validation accuracy {report['accuracy']:.1%} "
          f"on {report['n_items']} held-out clips ({len(task.config.model.labels)} classes)")  # fmt: skip
    for name, row in report["per_class"].items():
        print(f"  {name:12s} {row['accuracy']:6.1%}  ({row['n']} clips)")
    print(f"report: {args.out / 'report.json'}")
    return 0
