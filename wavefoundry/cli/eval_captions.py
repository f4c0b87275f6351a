"""``wavefoundry eval captions``: predicted captions and labels vs references -> CIDEr-D, BLEU-4, ROUGE-L, WAR/UAR, mAP.

    wavefoundry eval captions predictions.jsonl data/avcaps/manifest.jsonl --split test --out metrics.json
    wavefoundry eval captions predictions.jsonl references.jsonl --out metrics.json

PRED is JSONL, one object per item: ``id`` and any of ``caption`` (a string), ``label`` (the predicted class) and
``scores`` (class -> score, for multi-label mAP). REFS is a manifest (captions from ``captions``, else
``caption``; the class from ``attrs.label``; attributes from ``attrs.labels``) or JSONL with ``id``, ``captions``
and optional ``label`` and ``labels``. Items are paired by id; ids on one side only are listed under
``missing`` and left out (as are items whose reference caption list is empty: ``missing.empty_references``),
and the scores cover the paired ids (CIDEr-D's idf comes from their references).
Captions are normalised (lowercase, punctuation stripped; docs/captions.md) before scoring.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def register(cmds: argparse._SubParsersAction) -> None:
    p = cmds.add_parser("captions", help="caption metrics (CIDEr-D, BLEU-4, ROUGE-L) and WAR/UAR/mAP of predictions",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("predictions", type=Path, help="JSONL: id + caption / label / scores")
    p.add_argument("references", type=Path, help="manifest.jsonl or JSONL: id + captions / label / labels")
    p.add_argument("--split", help="manifest references: only items of this split (e.g. test)")
    p.add_argument("--out", type=Path, help="write the JSON here (default: print it)")
    p.set_defaults(func=run_captions)


def read_rows(path: Path) -> dict[str, dict[str, Any]]:
    """id -> row of a JSONL file (errors name the file and line; duplicate ids are an error)."""
    if not path.is_file():
        raise FileNotFoundError(f"not a file: {path}")
    rows: dict[str, dict[str, Any]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise ValueError(f"{path}:{lineno}: expected an object with a string 'id'")
        if row["id"] in rows:
            raise ValueError(f"{path}:{lineno}: duplicate id {row['id']!r}")
        rows[row["id"]] = row
    return rows


def read_references(path: Path, split: str | None) -> dict[str, dict[str, Any]]:
    """id -> {"captions", "label", "labels"} from a manifest (rows with ``path``) or a references JSONL."""
    rows = read_rows(path)
    if rows and all("path" in r for r in rows.values()):
        from wavefoundry.data.manifest import read_manifest

        return {it.id: {"captions": it.captions or ([it.caption] if it.caption else []),
                        "label": it.attrs.get("label"), "labels": it.attrs.get("labels")}
                for it in read_manifest(path) if split is None or it.split == split}  # fmt: skip
    if split is not None:
        raise ValueError("--split applies to manifest references only")
    return rows


def _captions(preds: dict, refs: dict, ids: list[str], report: dict) -> None:
    from wavefoundry.eval.captions import caption_metrics

    pairs = [i for i in ids if "caption" in preds[i] and refs[i].get("captions")]
    report["missing"]["empty_references"] = [i for i in ids if "caption" in preds[i] and not refs[i].get("captions")]
    if not pairs:
        return
    for i in pairs:
        if not isinstance(preds[i]["caption"], str):
            raise ValueError(f"prediction {i!r}: caption must be a string")
    out = caption_metrics({i: preds[i]["caption"] for i in pairs}, {i: list(refs[i]["captions"]) for i in pairs})
    report["captions"] = {"n": len(pairs), **out["corpus"]}
    for i, scores in out["per_id"].items():
        report["per_id"].setdefault(i, {}).update(scores)


def _classification(preds: dict, refs: dict, ids: list[str], report: dict) -> None:
    from wavefoundry.eval.classification import per_class_recall, uar, war

    pairs = [i for i in ids if "label" in preds[i] and refs[i].get("label") is not None]
    if not pairs:
        return
    t, p = [str(refs[i]["label"]) for i in pairs], [str(preds[i]["label"]) for i in pairs]
    report["classification"] = {"n": len(pairs), "war": war(t, p), "uar": uar(t, p),
                                "per_class_recall": per_class_recall(t, p)}  # fmt: skip
    for i, ti, pi in zip(pairs, t, p):
        report["per_id"].setdefault(i, {})["correct"] = ti == pi


def _multilabel(preds: dict, refs: dict, ids: list[str], report: dict) -> None:
    from wavefoundry.eval.classification import mean_average_precision

    pairs = [i for i in ids if isinstance(preds[i].get("scores"), dict) and refs[i].get("labels") is not None]
    if not pairs:
        return
    classes = sorted({c for i in pairs for c in [*refs[i]["labels"], *preds[i]["scores"]]})
    col = {c: k for k, c in enumerate(classes)}
    targets = np.zeros((len(pairs), len(classes)))
    scores = np.full((len(pairs), len(classes)), np.nan)
    for r, i in enumerate(pairs):
        targets[r, [col[c] for c in refs[i]["labels"]]] = 1
        for c, s in preds[i]["scores"].items():
            scores[r, col[c]] = float(s)
    # A class missing from a row's scores ranks below every score given for that class.
    floor = np.where(np.isnan(scores).all(0), 0.0, np.nanmin(np.where(np.isnan(scores), np.inf, scores), 0)) - 1
    scores = np.where(np.isnan(scores), floor, scores)
    value, skipped = mean_average_precision(targets, scores)
    report["multilabel"] = {"n": len(pairs), "map": value, "n_classes": len(classes), "skipped_classes": skipped}


def caption_report(preds: dict, refs: dict) -> dict:
    """The metrics JSON of paired predictions and references (see the module docstring)."""
    ids = sorted(set(preds) & set(refs))
    report: dict[str, Any] = {
        "n_predictions": len(preds), "n_references": len(refs), "n_paired": len(ids),
        "missing": {"no_prediction": sorted(set(refs) - set(preds)), "no_reference": sorted(set(preds) - set(refs))},
        "per_id": {},
    }  # fmt: skip
    if not ids:
        raise ValueError("no prediction id matches a reference id")
    _captions(preds, refs, ids, report)
    _classification(preds, refs, ids, report)
    _multilabel(preds, refs, ids, report)
    if not {"captions", "classification", "multilabel"} & set(report):
        raise ValueError("nothing to score: predictions need 'caption', 'label' or 'scores' matching the references")
    report["per_id"] = dict(sorted(report.pop("per_id").items()))  # per-item scores last
    return report


def run_captions(args: argparse.Namespace) -> int:
    preds = read_rows(args.predictions)
    refs = read_references(args.references, args.split)
    report = {"predictions": str(args.predictions), "references": str(args.references), "split": args.split,
              **caption_report(preds, refs)}  # fmt: skip
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        print(json.dumps({k: report[k] for k in ("captions", "classification", "multilabel") if k in report}))
    else:
        print(text)
    missing = report["missing"]
    if missing["no_prediction"] or missing["no_reference"]:
        a, b = len(missing["no_prediction"]), len(missing["no_reference"])
        print(f"{a} references without a prediction, {b} predictions without a reference (left out)", file=sys.stderr)
    return 0
