"""``wavefoundry eval fd|kl|clap|memorization|report``: distribution metrics of generated audio, as JSON.

    wavefoundry eval fd generated/ data/synthcaps/manifest.jsonl --split valid --out fd.json
    wavefoundry eval fd generated/ reference/ --embedder openl3 --weights openl3_audio_mel256_music.h5 --out fd.json
    wavefoundry eval fd reference/ --save-stats ref.stats.safetensors        (statistics only, to compare later)
    wavefoundry eval fd generated/ ref.stats.safetensors --out fd.json
    wavefoundry eval kl generated/ reference/ --convention stable-audio-metrics --out kl.json
    wavefoundry eval clap generated/ --prompts prompts.csv --out clap.json
    wavefoundry eval memorization generated/ data/synthcaps/manifest.jsonl --split train --out mem.json
    wavefoundry eval report fd.json kl.json clap.json mem.json --generated generated/ --prompts prompts.csv \
        --out report/

Sets are folders (ids = relative paths without suffix) or manifests (ids = item ids); generations are paired with
references by id. The default embedders are the offline SynthCaps models in models/ (docs/default_embedders.md);
the standard ones (OpenL3, PaSST, LAION-CLAP) load from ``--weights`` (docs/evaluation.md). Every JSON carries the
embedder's name, weights hash, rate, window, hop and channel mode, the files rejected with their reasons, and the
silent files (kept in the score).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

STATS_SUFFIX = ".safetensors"


def _common(p: argparse.ArgumentParser, *, reference: bool = True) -> None:
    if reference:
        p.add_argument("--split", help="reference (training) manifest: only items of this split, e.g. valid")
        p.add_argument("--generated-split", help="generated set given as a manifest: only items of this split")
    else:
        p.add_argument("--split", help="manifest: only items of this split (e.g. valid)")
    p.add_argument("--limit", type=int, help="use at most this many files per set")
    p.add_argument("--weights", type=Path, help="embedder weights (a file or folder; default: the SynthCaps model)")
    if reference:
        p.add_argument(
            "--allow-mismatch",
            action="store_true",
            help="compare sets of different sample rates or channel counts (recorded in the JSON)",
        )
    p.add_argument("--out", type=Path, help="write the JSON here (a summary is always printed)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def register(cmds: argparse._SubParsersAction) -> None:
    """Add fd, kl, clap, memorization and report to the ``eval`` subcommands."""
    from wavefoundry.cli.embedders import CLASSIFIERS, FRAME_EMBEDDERS, TEXT_AUDIO_MODELS
    from wavefoundry.eval.clap_score import CLAP_POLICIES

    CLAP_POLICY_NAMES = [*CLAP_POLICIES, "random-crop"]

    fmt = {"description": __doc__, "formatter_class": argparse.RawDescriptionHelpFormatter}
    p = cmds.add_parser("fd", help="Fréchet distance between two sets (or a set and saved statistics)", **fmt)
    p.add_argument("generated", type=Path, help="folder, manifest.jsonl or saved statistics (.safetensors)")
    p.add_argument("reference", type=Path, nargs="?", help="folder, manifest.jsonl or saved statistics")
    p.add_argument("--embedder", default="synthcaps", choices=list(FRAME_EMBEDDERS), help="default synthcaps")
    p.add_argument("--channel-mode", choices=("mono", "lr-concat"), help="openl3: mono or stereo L/R (default)")
    p.add_argument("--save-stats", type=Path, help="save the statistics of the last set embedded here")
    p.add_argument("--fad-inf", action="store_true", help="also extrapolate FD to infinitely many frames")
    _common(p)
    p.set_defaults(func=run_fd)
    p = cmds.add_parser("kl", help="KL between class distributions of paired generations and references", **fmt)
    p.add_argument("generated", type=Path, help="folder of <id>.wav")
    p.add_argument("reference", type=Path, help="folder or manifest.jsonl with the same ids")
    p.add_argument("--classifier", default="synthcaps", choices=list(CLASSIFIERS), help="default synthcaps")
    p.add_argument("--labels-csv", type=Path, help="passt: AudioSet class_labels_indices.csv (label names)")
    p.add_argument("--convention", default="stable-audio-metrics", help="windowing/direction policy (docs)")
    _common(p)
    p.set_defaults(func=run_kl)
    p = cmds.add_parser("clap", help="CLAP score: cosine of text and audio embeddings", **fmt)
    p.add_argument("generated", type=Path, help="folder of <id>.wav (or a manifest: its own captions)")
    p.add_argument("--prompts", type=Path, help="prompt file (CSV) or manifest.jsonl giving each id's text")
    p.add_argument("--model", default="synthcaps", choices=list(TEXT_AUDIO_MODELS), help="default synthcaps")
    p.add_argument("--policy", default="chunk-mean", choices=CLAP_POLICY_NAMES,
                   help="long-audio policy or reference convention (docs/kl_and_clap.md)")  # fmt: skip
    p.add_argument("--crops", type=int, default=1, help="random-crop: crops per file (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random-crop: seed (default 0)")
    _common(p, reference=False)
    p.set_defaults(func=run_clap)
    p = cmds.add_parser("memorization", help="nearest training neighbours of generations, copies flagged", **fmt)
    p.add_argument("generated", type=Path, help="folder of generations")
    p.add_argument("training", type=Path, help="folder or manifest.jsonl of the training set")
    p.add_argument("--embedder", default="synthcaps", choices=list(FRAME_EMBEDDERS), help="default synthcaps")
    p.add_argument("--k", type=int, default=5, help="neighbours per generation (default 5)")
    p.add_argument("--top", type=int, default=20, help="generations listed, closest first (default 20)")
    p.add_argument("--threshold", type=float, help="near-copy distance (default: from the training set)")
    _common(p)
    p.set_defaults(func=run_memorization)
    p = cmds.add_parser("report", help="HTML page of metric results with players and spectrograms", **fmt)
    p.add_argument("results", type=Path, nargs="+", help="JSON files written by wavefoundry eval ...")
    p.add_argument("--generated", type=Path, help="folder of generations to sample players from")
    p.add_argument("--prompts", type=Path, help="prompt file (CSV) or manifest.jsonl for the prompts shown")
    p.add_argument("--sample", type=int, default=8, help="generations shown (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--title", default="wavefoundry evaluation", help="page title")
    p.add_argument("--out", type=Path, required=True, help="page folder (index.html)")
    p.set_defaults(func=run_report)


def write_result(result: dict[str, Any], out: Path | None, line: str) -> None:
    """Write the JSON (if ``out``) and print one summary line."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    print(line)


def _is_stats(path: Path) -> bool:
    return path.is_file() and path.name.endswith(STATS_SUFFIX)


def _set_stats(path: Path, split: str | None, embedder, args, reports: dict, frames: list | None):
    """Statistics of a set: loaded from a stats file, or accumulated from the embedder's frames of each file."""
    from wavefoundry.cli.eval_sets import SetReport, audio_set, embed_each, require_used
    from wavefoundry.eval.frechet import EmbeddingStats, RunningStats

    if _is_stats(path):
        return EmbeddingStats.load(path)
    files = audio_set(path, split=split, limit=args.limit)
    report = reports.setdefault(str(path), SetReport())
    running = RunningStats(embedder.dim)
    for _, emb in embed_each(files, embedder.embed, report, desc=f"fd {path.name}", progress=not args.no_progress):
        running.update(emb)
        if frames is not None:
            frames.append(emb)
    require_used(str(path), report)
    return running.to_stats(embedder.info, source=str(path), n_files=report.n_files - len(report.rejects))


def run_fd(args: argparse.Namespace) -> int:
    from wavefoundry.cli.embedders import FRAME_EMBEDDERS, build
    from wavefoundry.cli.eval_sets import check_formats
    from wavefoundry.eval.frechet import fad_inf, stats_fd

    paths = [p for p in (args.generated, args.reference) if p is not None]
    if len(paths) == 1 and args.save_stats is None:
        raise ValueError("give a reference set (or saved statistics), or --save-stats to only compute statistics")
    if all(_is_stats(p) for p in paths) and args.fad_inf:
        raise ValueError("--fad-inf needs the generated frames: give the generated folder, not its statistics")
    needs_embedder = not all(_is_stats(p) for p in paths)
    embedder = build(FRAME_EMBEDDERS, args.embedder, args.weights, channel_mode=args.channel_mode) \
        if needs_embedder else None  # fmt: skip
    reports: dict = {}
    frames: list | None = [] if args.fad_inf else None
    splits = [args.generated_split, args.split] if len(paths) == 2 else [args.split]
    stats = [_set_stats(p, split, embedder, args, reports, frames if i == 0 else None)
             for i, (p, split) in enumerate(zip(paths, splits))]  # fmt: skip
    problems = check_formats(reports, allow_mismatch=args.allow_mismatch)
    if args.save_stats is not None:
        stats[-1].save(args.save_stats)
    sets = {str(p): {**s.metadata, **({"files": reports[str(p)].to_dict()} if str(p) in reports else {})}
            for p, s in zip(paths, stats)}  # fmt: skip
    if len(paths) == 1:
        write_result({"metric": "fd-stats", "summary": {"count": stats[0].count, "dim": stats[0].dim}, "sets": sets},
                     args.out, f"statistics of {stats[0].count} frames saved to {args.save_stats}")  # fmt: skip
        return 0
    result = stats_fd(stats[0], stats[1], labels=("generated", "reference"))
    summary: dict[str, Any] = result.to_dict()
    if args.fad_inf:
        inf = fad_inf(np.concatenate(frames), stats[0].info, stats[1])
        summary.update({"fad_inf": inf.fd_inf, "fad_inf_slope": inf.slope})
    out = {"metric": "fd", "embedder": stats[0].info.to_dict(), "summary": summary, "sets": sets,
           "format_problems_allowed": problems}  # fmt: skip
    write_result(out, args.out, f"FD ({stats[0].info.name}) = {result.fd:.4f} "
                 f"(mean term {result.mean_term:.4f}, trace term {result.trace_term:.4f})")  # fmt: skip
    return 0


def _stream(files, report, *, desc: str, progress: bool):
    from wavefoundry.cli.eval_sets import iter_audio

    yield from iter_audio(files, report, desc=desc, progress=progress)


def _rejects(report, reasons: dict[str, str], files) -> list[dict[str, str]]:
    """A set's unreadable files plus the metric's own per-item rejects, each with its reason."""
    return report.rejects + [{"id": k, "path": str(files.files.get(k, "")), "reason": r} for k, r in reasons.items()]


def run_kl(args: argparse.Namespace) -> int:
    from wavefoundry.cli.embedders import CLASSIFIERS, build
    from wavefoundry.cli.eval_sets import SetReport, audio_set, check_formats
    from wavefoundry.eval.kl import distributions, kl_policy, paired_kl

    policy = kl_policy(args.convention)
    classifier = build(CLASSIFIERS, args.classifier, args.weights, labels_csv=args.labels_csv)
    if abs(classifier.info.window_s - policy.window_s) > 1e-9:  # e.g. the 4 s SynthCaps tagger
        policy = policy.with_window(classifier.info.window_s)
    sets = {"generated": audio_set(args.generated, split=args.generated_split, limit=args.limit),
            "reference": audio_set(args.reference, split=args.split, limit=args.limit)}  # fmt: skip
    reports = {name: SetReport() for name in sets}
    probs, reasons = {}, {}
    for name, files in sets.items():
        stream = _stream(files, reports[name], desc=f"kl {name}", progress=not args.no_progress)
        probs[name], reasons[name] = distributions(classifier, stream, policy)
    problems = check_formats(reports, allow_mismatch=args.allow_mismatch)
    result = paired_kl(probs["generated"], probs["reference"], policy)
    out = {"metric": "kl", "convention": args.convention, "classifier": classifier.info.to_dict(),
           "summary": {"kl": result.mean, "kl_reverse": result.mean_reverse, "direction": result.direction,
                       "n_items": result.n_items, "n_segments": result.n_segments},
           **result.to_dict(),
           "sets": {name: {"source": str(files.source), **reports[name].to_dict(),
                           "rejects": _rejects(reports[name], reasons[name], files)}
                    for name, files in sets.items()},
           "format_problems_allowed": problems}  # fmt: skip
    write_result(out, args.out, f"KL ({args.convention}, {result.direction}, {classifier.info.name}) = "
                 f"{result.mean:.4f} over {result.n_items} pairs")  # fmt: skip
    return 0


def load_texts(path: Path) -> dict[str, str]:
    """id -> prompt from a prompt file (AudioCaps / Song Describer / id,caption CSV) or a manifest.jsonl."""
    from wavefoundry.cli.eval_sets import audio_set
    from wavefoundry.data.prompt_files import read_prompt_file

    if path.suffix == ".jsonl":
        return audio_set(path).captions
    return {p.id: p.caption for p in read_prompt_file(path)}


def run_clap(args: argparse.Namespace) -> int:
    from wavefoundry.cli.embedders import TEXT_AUDIO_MODELS, build
    from wavefoundry.cli.eval_sets import SetReport, audio_set
    from wavefoundry.eval.clap_score import ClapPolicy, clap_policy, clap_score

    files = audio_set(args.generated, split=args.split, limit=args.limit)
    texts = load_texts(args.prompts) if args.prompts else files.captions
    if not texts:
        raise ValueError("no prompts: give --prompts (a prompt CSV or manifest), or a manifest with captions")
    model = build(TEXT_AUDIO_MODELS, args.model, args.weights)
    base = ClapPolicy(mode="random-crop") if args.policy == "random-crop" else clap_policy(args.policy)
    policy = dataclasses.replace(base, n_crops=args.crops, seed=args.seed) if base.mode == "random-crop" else base
    report = SetReport()
    stream = _stream(files, report, desc="clap", progress=not args.no_progress)
    result = clap_score(model, stream, {k: v for k, v in texts.items() if k in files.files}, policy)
    out = {"metric": "clap", "model": model.info.to_dict(),
           "summary": {"clap_score": result.mean, "n_items": result.n_items},
           **result.to_dict(), "per_item": {k: {"cosine": v} for k, v in result.per_item.items()},
           "sets": {"generated": {"source": str(files.source), **report.to_dict(),
                                  "rejects": _rejects(report, result.rejects, files)}},
           "prompts_without_audio": sorted(set(texts) - set(files.files))}  # fmt: skip
    write_result(out, args.out, f"CLAP score ({model.info.name}, {args.policy}) = {result.mean:.4f} "
                 f"over {result.n_items} clips")  # fmt: skip
    return 0


def _clip_embeddings(files, embedder, report, *, desc: str, progress: bool) -> tuple[list[str], np.ndarray]:
    """One vector per file: the mean of the embedder's frames; (ids, (N, D))."""
    from wavefoundry.cli.eval_sets import embed_each

    ids, rows = [], []
    for key, frames in embed_each(files, embedder.embed, report, desc=desc, progress=progress):
        ids.append(key)
        rows.append(frames.mean(axis=0))
    return ids, np.stack(rows) if rows else np.zeros((0, embedder.dim))


def run_memorization(args: argparse.Namespace) -> int:
    from wavefoundry.cli.embedders import FRAME_EMBEDDERS, build
    from wavefoundry.cli.eval_sets import SetReport, audio_set, check_formats, require_used
    from wavefoundry.eval.memorization import memorization_report

    embedder = build(FRAME_EMBEDDERS, args.embedder, args.weights)
    sets = {"generated": audio_set(args.generated, split=args.generated_split, limit=args.limit),
            "training": audio_set(args.training, split=args.split, limit=None)}  # fmt: skip
    reports = {name: SetReport() for name in sets}
    emb = {}
    for name, files in sets.items():
        emb[name] = _clip_embeddings(files, embedder, reports[name], desc=f"memorization {name}",
                                     progress=not args.no_progress)  # fmt: skip
        require_used(name, reports[name])
    problems = check_formats(reports, allow_mismatch=args.allow_mismatch)
    (gen_ids, gen), (train_ids, train) = emb["generated"], emb["training"]
    report = memorization_report(gen_ids, gen, train_ids, train, k=min(args.k, len(train_ids)), top=args.top,
                                 threshold=args.threshold)  # fmt: skip
    paths = {"generated": sets["generated"].files, "training": sets["training"].files}
    for row in report["closest"]:
        row["path"] = str(paths["generated"][row["id"]])
        for n in row["neighbours"]:
            n["path"] = str(paths["training"][n["id"]])
    out = {**report, "embedder": embedder.info.to_dict(),
           "sets": {name: {"source": str(files.source), **reports[name].to_dict()} for name, files in sets.items()},
           "format_problems_allowed": problems}  # fmt: skip
    counts, summary = report["summary"]["counts"], report["summary"]
    write_result(out, args.out, f"memorization ({embedder.info.name}, {report['distance']}): {counts['exact']} "
                 f"exact and {counts['near']} near copies among {summary['n_scored']} generations "
                 f"(threshold {summary['threshold']:.4g})")  # fmt: skip
    return 0


def run_report(args: argparse.Namespace) -> int:
    import random

    from wavefoundry.cli.eval_sets import audio_set
    from wavefoundry.eval.eval_report import ReportClip, load_result, write_evaluation_report

    results = {}
    for path in args.results:
        result = load_result(path)
        label = result["metric"] if result["metric"] not in results else f"{result['metric']} ({path.name})"
        results[label] = result
    clips = []
    if args.generated is not None:
        files = audio_set(args.generated)
        texts = load_texts(args.prompts) if args.prompts else files.captions
        keys = sorted(files.files)
        shown = sorted(random.Random(args.seed).sample(keys, min(args.sample, len(keys))))
        for key in shown:
            scores = {label: _item_score(r, key) for label, r in results.items()}
            clips.append(ReportClip(id=key, path=files.files[key], prompt=texts.get(key),
                                    scores={k: v for k, v in scores.items() if v is not None}))  # fmt: skip
    settings = {"results": ", ".join(str(p) for p in args.results),
                "generated": str(args.generated) if args.generated else None}  # fmt: skip
    index = write_evaluation_report(args.out, title=args.title, results=results, clips=clips, settings=settings)
    print(f"report: {index}")
    return 0


def _item_score(result: dict[str, Any], key: str) -> Any:
    value = result.get("per_item", {}).get(key)
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.values()))
    return value
