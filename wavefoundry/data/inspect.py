"""Summaries of a dataset: a JSONL manifest or a set of tar shards (counts, hours, rates, licences, prompts).

Only metadata is read (the manifest lines, or the shards' JSON members), so summarising a large dataset is
fast.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from wavefoundry.data.manifest import iter_manifest
from wavefoundry.data.shards import iter_shards, shard_paths

_HISTOGRAMS = ("sample_rates", "channels", "licenses", "sources", "splits")


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": min(values),
        "median": float(statistics.median(values)),
        "mean": sum(values) / len(values),
        "max": max(values),
    }


def _histogram(values: Iterable[Any]) -> dict[Any, int]:
    return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], str(kv[0]))))


def summarize_records(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary of manifest-item dicts (the keys of ``ManifestItem``); see :func:`summarize`."""
    records = list(records)
    durations = [float(r.get("duration_s") or 0.0) for r in records]
    prompts = [len(r.get("prompt") or r.get("caption") or "") for r in records]
    return {
        "items": len(records),
        "total_hours": sum(durations) / 3600.0,
        "duration_s": _stats(durations),
        "sample_rates": _histogram(int(r.get("sample_rate") or 0) for r in records),
        "channels": _histogram(int(r.get("channels") or 0) for r in records),
        "licenses": _histogram(r.get("license") or "(none)" for r in records),
        "sources": _histogram(r.get("source") or "(none)" for r in records),
        "splits": _histogram(r.get("split") or "(none)" for r in records),
        "attribution_required": sum(bool(r.get("attribution_required")) for r in records),
        "prompt_chars": _stats([float(n) for n in prompts]),
        "empty_prompts": sum(n == 0 for n in prompts),
    }


def _kind(path: Path) -> str:
    if path.is_file():
        return "shards" if path.suffix == ".tar" else "manifest"
    if path.is_dir():
        if any(path.glob("*.tar")):
            return "shards"
        if (path / "manifest.jsonl").is_file():
            return "manifest"
        raise FileNotFoundError(f"{path}: no manifest.jsonl and no *.tar shards in this folder")
    return "shards"  # a glob or brace range; shard_paths says so if nothing matches


def summarize(path: str | Path) -> dict[str, Any]:
    """Summarise a manifest (a ``.jsonl`` file, or a folder holding ``manifest.jsonl``) or shards (a ``.tar``,
    a folder of them, a glob or a brace range).

    Returns:
        ``{"path", "kind", "items", "total_hours", "duration_s": {min, median, mean, max}, "sample_rates",
        "channels", "licenses", "sources", "splits" (histograms, most common first), "attribution_required",
        "prompt_chars": {min, median, mean, max}, "empty_prompts"}``, plus ``"shards"`` for shards. Stats are
        None for an empty dataset.

    Raises:
        FileNotFoundError: nothing to summarise at ``path``. ManifestError: an invalid manifest line.
    """
    path = Path(path)
    kind = _kind(path)
    if kind == "manifest":
        manifest = path / "manifest.jsonl" if path.is_dir() else path
        summary = summarize_records(vars(item) for item in iter_manifest(manifest))
        return {"path": str(manifest), "kind": kind, **summary}
    shards = shard_paths(path)
    summary = summarize_records(sample.meta for sample in iter_shards(shards, decode=False))
    return {"path": str(path), "kind": kind, "shards": len(shards), **summary}


def _fmt_stats(stats: Mapping[str, float] | None, unit: str = "", digits: int = 2) -> str:
    if stats is None:
        return "-"
    return "  ".join(f"{k} {v:.{digits}f}{unit}" for k, v in stats.items())


def _fmt_hist(hist: Mapping[Any, int]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in hist.items()) or "-"


def format_summary(summary: Mapping[str, Any]) -> str:
    """A readable two-column table of a :func:`summarize` result."""
    rows = [("path", f"{summary['path']} ({summary['kind']})")]
    if "shards" in summary:
        rows.append(("shards", str(summary["shards"])))
    rows += [
        ("items", str(summary["items"])),
        ("total", f"{summary['total_hours']:.3f} h ({summary['total_hours'] * 3600:.1f} s)"),
        ("duration", _fmt_stats(summary["duration_s"], " s")),
    ]
    rows += [(name.replace("_", " "), _fmt_hist(summary[name])) for name in _HISTOGRAMS]
    rows += [
        ("attribution", f"{summary['attribution_required']} items need attribution"),
        ("prompt chars", _fmt_stats(summary["prompt_chars"], digits=1)),
        ("empty prompts", str(summary["empty_prompts"])),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
