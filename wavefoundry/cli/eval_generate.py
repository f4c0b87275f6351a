"""``wavefoundry eval generate``: one clip per benchmark caption, named by its id (docs/benchmark_prompts.md).

    wavefoundry eval generate audiocaps/test.csv --model models/t2a-tiny --out gen/audiocaps
    wavefoundry eval generate song_describer.csv --model DIR --seconds 47 --steps 100 --cfg 7 --out gen/sdd
    wavefoundry eval generate prompts.csv --model DIR --out gen/ --limit 100 --sampler dpmpp-2m

The prompt file is an AudioCaps CSV (audiocap_id,youtube_id,start_time,caption: 10 s each), a Song Describer
song_describer.csv (no durations: pass --seconds) or a plain id,caption[,seconds] CSV. Each caption becomes
<out>/<id>.wav, generated at the file's duration unless --seconds is given, with its own seed derived from --seed
and the id, so a clip does not depend on the batch, the order, --limit or an earlier interrupted run. Existing
clips are skipped (run the command again to resume). <out>/generate.json records the settings and each id's status
(generated, skipped, failed, rejected) with its seed and reason; rows of the file that cannot be used are listed
under "rejects" with their row number, and clips of earlier runs that this run did not plan (beyond --limit) under
"earlier_items". A clip can be reproduced alone with ``wavefoundry generate CAPTION --seed
<its seed> --seconds S ...`` using the seed from generate.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from wavefoundry.cli import generate

#: Settings that must match for a run to resume into an existing ``--out`` folder.
RESUME_KEYS = ("model", "t5", "seconds", "steps", "cfg", "sampler", "seed", "negative", "seed_rule")
SEED_RULE = "sha256('{seed}:{id}'), first 8 bytes big-endian, top bit cleared"
RECORD = "generate.json"


def register(cmds: argparse._SubParsersAction) -> None:
    """Add ``generate`` to the ``eval`` subcommands."""
    p = cmds.add_parser("generate", help="one clip per benchmark caption (AudioCaps, Song Describer, id,caption CSV)",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("prompts", type=Path, help="prompt CSV: AudioCaps, Song Describer or id,caption[,seconds]")
    p.add_argument("--model", required=True, type=Path, help="text-to-audio model directory (ours, SAO or diffusers)")
    p.add_argument("--out", required=True, type=Path, help="folder for <id>.wav and generate.json")
    p.add_argument("--seconds", type=float, help="duration of every clip (default: the file's; AudioCaps 10 s)")
    p.add_argument("--batch", type=int, default=4,
                   help="clips of equal duration denoised together (default 4); each keeps its own seed")  # fmt: skip
    p.add_argument("--limit", type=int, help="only the first N valid prompts of the file")
    generate.add_sampling_arguments(p)
    p.set_defaults(func=run)


def id_seed(seed: int, item_id: str) -> int:
    """The noise seed of one id: it depends on ``seed`` and the id only (see :data:`SEED_RULE`)."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)  # torch.Generator.manual_seed takes up to 2**64 - 1


def _check_args(args: argparse.Namespace) -> None:
    """Bounds that need no model: batch, limit, seconds, steps, sampler name."""
    from wavefoundry.diffusion.generate import SamplingConfig
    from wavefoundry.pipelines import MAX_PROMPTS, MAX_STEPS

    if not 1 <= args.batch <= MAX_PROMPTS:
        raise ValueError(f"--batch must be in [1, {MAX_PROMPTS}], got {args.batch}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise ValueError(f"--seconds must be a finite number > 0, got {args.seconds}")
    if not 1 <= args.steps <= MAX_STEPS:
        raise ValueError(f"--steps must be in [1, {MAX_STEPS}], got {args.steps}")
    if not math.isfinite(args.cfg):
        raise ValueError(f"--cfg must be finite, got {args.cfg}")
    SamplingConfig(sampler=args.sampler, steps=args.steps)  # ValueError listing the valid samplers


def _plan(table, args: argparse.Namespace, max_seconds: float, max_chars: int) -> tuple[list[dict], list[dict]]:
    """(items to generate, rejects): each item's seconds and seed; prompts beyond the model's bounds rejected."""
    items, rejects = [], list(table.rejects)
    for prompt in table.prompts:
        seconds = args.seconds if args.seconds is not None else prompt.seconds
        reason = None
        if len(prompt.caption) > max_chars:
            reason = f"caption has {len(prompt.caption)} characters; the model takes at most {max_chars}"
        elif seconds > max_seconds:
            reason = f"{seconds:g} s is longer than the model's maximum of {max_seconds:g} s"
        if reason:
            rejects.append({"row": prompt.source_row, "id": prompt.id, "reason": reason})
            continue
        items.append({"id": prompt.id, "caption": prompt.caption, "seconds": seconds, "row": prompt.source_row,
                      "seed": id_seed(args.seed, prompt.id)})  # fmt: skip
    return items[: args.limit], rejects


def _previous(out: Path, settings: dict[str, Any]) -> dict[str, dict]:
    """Items of an earlier run into ``out`` by id; an error if it used other settings or left unrecorded clips."""
    record = out / RECORD
    if not record.is_file():
        stray = sorted(p.name for p in out.glob("*.wav")) if out.is_dir() else []
        if stray:
            raise ValueError(f"{out} holds {len(stray)} .wav files (e.g. {stray[0]}) but no {RECORD}: cannot tell "
                             "how they were made; use an empty --out folder")  # fmt: skip
        return {}
    try:
        before = json.loads(record.read_text(encoding="utf-8"))
        old = before["settings"]
        items = {it["id"]: it for it in [*before["items"], *before.get("earlier_items", [])]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{record} cannot be read ({exc}); use another --out folder") from None
    changed = [f"{k} {old.get(k)!r} -> {settings[k]!r}" for k in RESUME_KEYS if old.get(k) != settings[k]]
    if changed:
        raise ValueError(f"{out} was generated with other settings ({'; '.join(changed)}); use another --out "
                         "folder or the same settings to resume")  # fmt: skip
    return items


def _keep(item: dict, previous: dict[str, dict], out: Path) -> bool:
    """True when ``<id>.wav`` exists from an earlier run of the same caption and duration (resume)."""
    if not (out / f"{item['id']}.wav").is_file():
        return False
    old = previous.get(item["id"])
    if old is None or (old.get("caption"), old.get("seconds")) != (item["caption"], item["seconds"]):
        raise ValueError(f"{out / (item['id'] + '.wav')} was generated for another caption or duration than row "
                         f"{item['row']} asks for; use another --out folder")  # fmt: skip
    return True


def _write_clip(path: Path, audio, sample_rate: int) -> None:
    """Write through a temporary name, so an interrupted write never leaves a clip that resume would keep."""
    from wavefoundry.audio.io import save_audio

    partial = path.with_name(f".{path.stem}.partial.wav")
    save_audio(partial, audio, sample_rate)
    os.replace(partial, path)


def _generate_batch(pipe, batch: list[dict], args: argparse.Namespace, out: Path) -> None:
    """Generate and write the items of ``batch`` (equal durations) in one call, setting their status.

    Each id's noise comes from its own seed (``seeds=``), so a clip does not depend on its batch. If the batched
    call fails, each id is retried alone, so one bad item never stops the others.
    """
    from wavefoundry.diffusion.samplers import SamplingError

    def run(items: list[dict]) -> None:
        audio, sr = pipe.generate([it["caption"] for it in items], seconds_total=items[0]["seconds"],
                                  steps=args.steps, cfg_scale=args.cfg, sampler=args.sampler,
                                  seeds=[it["seed"] for it in items], negative_prompt=args.negative,
                                  batch=len(items))  # fmt: skip
        for it, clip in zip(items, audio):
            _write_clip(out / f"{it['id']}.wav", clip, sr)
            it["status"] = "generated"

    if len(batch) > 1:
        try:
            run(batch)
            return
        except (ValueError, SamplingError):
            pass  # retried one by one below: the bad id fails with its reason, the others are still generated
    for item in batch:
        try:
            run([item])
        except (ValueError, SamplingError) as exc:  # one bad item never stops the run
            item.update(status="failed", reason=str(exc).strip().splitlines()[0])


def _save_record(out: Path, record: dict[str, Any], items: list[dict], started: float) -> None:
    from wavefoundry.config import atomic_write_bytes

    statuses = [it.get("status", "pending") for it in items]
    record["counts"] = {s: statuses.count(s) for s in ("generated", "skipped", "failed", "pending")}
    record["counts"]["rejected"] = len(record["rejects"])
    record["seconds_elapsed"] = round(time.perf_counter() - started, 2)
    atomic_write_bytes(out / RECORD, (json.dumps(record, indent=2) + "\n").encode())


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from wavefoundry.data.prompt_files import read_prompt_table
    from wavefoundry.pipelines import TextToAudio

    _check_args(args)
    table = read_prompt_table(args.prompts)
    undated = [p for p in table.prompts if p.seconds is None]
    if args.seconds is None and undated:
        raise ValueError(f"{len(undated)} prompts of {args.prompts} ({table.format}) have no duration (first: row "
                         f"{undated[0].source_row}, id {undated[0].id}); pass --seconds")  # fmt: skip
    settings = {"model": str(args.model.resolve()), "t5": str(args.t5.resolve()) if args.t5 else None,
                **{k: getattr(args, k) for k in ("seconds", "steps", "cfg", "sampler", "seed", "negative")},
                "seed_rule": SEED_RULE}  # fmt: skip
    previous = _previous(args.out, settings)
    pipe = TextToAudio.from_pretrained(args.model, **({"t5_path": args.t5} if args.t5 else {}))
    max_seconds = pipe.max_seconds
    if args.seconds is not None and args.seconds > max_seconds:
        raise ValueError(f"--seconds {args.seconds:g} is longer than the model's maximum of {max_seconds:g} s")
    items, rejects = _plan(table, args, max_seconds, pipe.max_prompt_chars)
    for item in items:
        if _keep(item, previous, args.out):
            item["status"] = "skipped"
    planned = {it["id"] for it in items}
    earlier = [it for i, it in previous.items() if i not in planned]  # beyond --limit now, or left the file
    record = {"prompts": str(args.prompts), "format": table.format, "settings": settings, "batch": args.batch,
              "limit": args.limit, "sample_rate": pipe.sample_rate, "items": items, "rejects": rejects,
              "earlier_items": earlier}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _save_record(args.out, record, items, started)  # the settings are on disk before the first clip
    todo = [it for it in items if it.get("status") != "skipped"]
    by_seconds: dict[float, list[dict]] = {}
    for it in todo:
        by_seconds.setdefault(it["seconds"], []).append(it)
    batches = [g[k : k + args.batch] for g in by_seconds.values() for k in range(0, len(g), args.batch)]
    bar = tqdm(total=len(todo), desc="eval generate", unit="clip", disable=args.no_progress)
    try:
        for batch in batches:
            _generate_batch(pipe, batch, args, args.out)
            bar.update(len(batch))
    finally:
        bar.close()
        _save_record(args.out, record, items, started)
    counts = record["counts"]
    print(f"{counts['generated']} generated, {counts['skipped']} skipped (already there), {counts['failed']} failed, "
          f"{counts['rejected']} rejected -> {args.out}")  # fmt: skip
    return 0
