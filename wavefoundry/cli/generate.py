"""``wavefoundry generate``: text -> audio with a text-to-audio model.

    wavefoundry generate "a sine-wave synth playing a single C4 note" --model models/t2a-tiny --seconds 4 --out a.wav
    wavefoundry generate "rain" "a siren" --model DIR --steps 50 --cfg 6 --sampler dpmpp-3m-sde --seed 1 --out outdir/
    wavefoundry generate --prompts prompts.txt --model DIR --out outdir/

    wavefoundry generate --manifest data/cache/synthcaps-.../manifest.jsonl --split valid --model DIR --out gen/

One prompt and ``--out x.wav`` writes that file; several prompts (or ``--prompts FILE``, one per line) write
``000.wav, 001.wav, ...`` into the ``--out`` folder with a ``prompts.tsv`` index. The same seed gives the same audio.
``--manifest`` generates each item's caption (at the item's duration unless ``--seconds`` is given) into
``<item id>.wav``, which ``wavefoundry eval adherence MANIFEST --audio-dir gen/`` scores against the item's attrs.

A masked-transformer model directory (``config.json`` of type ``masked-audio``, docs/masked.md) is decoded by
iterative parallel sampling instead: ``--stage-steps 20,10,10,10`` (default: the model's), ``--cfg`` (the guidance
at the first step, annealed to ``--cfg-min``), ``--temperature``, ``--top-p``; ``--init-audio`` is a prefix to
continue, or with ``--inpaint START END`` the audio whose [START, END) seconds are regenerated.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MAX_PROMPT_FILE_LINES = 1000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="text -> audio with a text-to-audio model", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("prompt", nargs="*", help="one or more prompts")
    p.add_argument("--prompts", type=Path, help="a text file with one prompt per line")
    p.add_argument("--model", required=True, type=Path, help="text-to-audio model directory (ours, SAO or diffusers)")
    p.add_argument("--out", required=True, type=Path, help="output .wav (one prompt) or folder")
    p.add_argument("--manifest", type=Path, help="generate the captions of a manifest's items into <id>.wav")
    p.add_argument("--split", default=None, help="with --manifest: only this split (e.g. valid)")
    p.add_argument("--limit", type=int, default=None, help="with --manifest: at most this many items")
    p.add_argument("--seconds", type=float, default=None, help="duration in seconds (default 4, or the item's)")
    p.add_argument("--seconds-start", type=float, default=0.0, help="seconds_start condition (default 0)")
    p.add_argument("--batch", type=int, default=4, help="prompts generated together (default 4)")
    p.add_argument("--init-audio", type=Path, default=None, help="audio to start from (audio-to-audio)")
    p.add_argument("--init-noise", type=float, default=1.0, help="noise level (sigma) for --init-audio")
    add_sampling_arguments(p)
    m = p.add_argument_group("masked-transformer models (docs/masked.md)")
    m.add_argument("--stage-steps", default=None, help="decoding steps per codebook, e.g. 20,10,10,10")
    m.add_argument("--cfg-min", type=float, default=None, help="guidance floor as the mask rate falls (default 1)")
    m.add_argument("--temperature", type=float, default=None, help="initial sampling temperature (default 3)")
    m.add_argument("--top-p", type=float, default=None, help="nucleus sampling p (default 0.9)")
    m.add_argument("--inpaint", type=float, nargs=2, metavar=("START", "END"), default=None,
                   help="with --init-audio: regenerate [START, END) seconds, keep the rest")  # fmt: skip
    p.set_defaults(func=run)


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """The sampling options shared by ``wavefoundry generate`` and ``wavefoundry eval generate``."""
    p.add_argument("--t5", type=Path, default=None, help="local T5 directory for official Stable Audio checkpoints")
    p.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
    p.add_argument("--cfg", type=float, default=6.0, help="classifier-free guidance scale (default 6)")
    p.add_argument("--sampler", default="dpmpp-3m-sde", help="euler, heun, dpmpp-2m, dpmpp-2m-sde, dpmpp-3m-sde")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--negative", default=None, help="negative prompt")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def read_prompts(args: argparse.Namespace) -> tuple[list[str], list[str] | None, list[float] | None]:
    """(prompts, output names or None, durations or None) from the command line, ``--prompts`` or ``--manifest``."""
    prompts = list(args.prompt)
    names = durations = None
    if args.prompts is not None:
        lines = [line.strip() for line in args.prompts.read_text(encoding="utf-8").splitlines()]
        prompts += [line for line in lines if line]
    if args.manifest is not None:
        from wavefoundry.data.manifest import read_manifest

        items = [it for it in read_manifest(args.manifest) if args.split is None or it.split == args.split]
        items = items[: args.limit]
        if prompts or not items:
            raise ValueError("--manifest takes no other prompts and needs at least one item (check --split)")
        prompts = [it.caption or it.text for it in items]
        names, durations = [it.id for it in items], [it.duration_s for it in items]
    if not prompts:
        raise ValueError("give at least one prompt (positional, --prompts FILE or --manifest)")
    if len(prompts) > MAX_PROMPT_FILE_LINES:
        raise ValueError(f"at most {MAX_PROMPT_FILE_LINES} prompts per run, got {len(prompts)}")
    return prompts, names, durations


def _groups(prompts: list[str], durations: list[float]) -> list[list[int]]:
    """Indices of prompts generated together: equal durations, at most MAX_PROMPTS per group."""
    from wavefoundry.pipelines import MAX_PROMPTS

    by_length: dict[float, list[int]] = {}
    for i, seconds in enumerate(durations):
        by_length.setdefault(seconds, []).append(i)
    return [g[k : k + MAX_PROMPTS] for g in by_length.values() for k in range(0, len(g), MAX_PROMPTS)]


def _model_type(path: Path) -> str | None:
    """The ``type`` of an exported model directory's config.json, or None (outside layouts, unreadable)."""
    try:
        return json.loads((path / "config.json").read_text()).get("type")
    except (OSError, ValueError, AttributeError):
        return None


def run(args: argparse.Namespace) -> int:
    from wavefoundry.audio.io import save_audio

    prompts, names, durations = read_prompts(args)
    if args.seconds is not None or durations is None:
        durations = [args.seconds if args.seconds is not None else 4.0] * len(prompts)
    single = names is None and len(prompts) == 1 and args.out.suffix.lower() in (".wav", ".flac", ".ogg")
    start = time.perf_counter()
    if _model_type(args.model) == "masked-audio":
        from wavefoundry.cli.generate_masked import generate_masked

        clips, sr = generate_masked(args, prompts, durations, _groups(prompts, durations))
    else:
        clips, sr = _generate_diffusion(args, prompts, durations)
    elapsed = time.perf_counter() - start
    if single:
        save_audio(args.out, clips[0], sr)
        print(f"wrote {args.out} ({durations[0]:g} s, generated in {elapsed:.1f} s)")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i:03d}" for i in range(len(prompts))]
    rows = []
    for name, prompt, clip in zip(names, prompts, clips):
        save_audio(args.out / f"{name}.wav", clip, sr)
        rows.append(f"{name}.wav\t{prompt}")
    (args.out / "prompts.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    settings = {k: getattr(args, k) for k in ("seconds", "steps", "cfg", "sampler", "seed", "negative")}
    settings.update(model=str(args.model), seconds_elapsed=round(elapsed, 2))
    (args.out / "generate.json").write_text(json.dumps(settings, indent=2) + "\n")
    print(f"wrote {len(clips)} clips to {args.out} in {elapsed:.1f} s")
    return 0


def _generate_diffusion(args: argparse.Namespace, prompts: list[str], durations: list[float]) -> tuple[list, int]:
    """Clips of a text-to-audio (diffusion) model, in prompt order, and their sample rate."""
    from wavefoundry.audio.io import load_audio
    from wavefoundry.pipelines import TextToAudio

    pipe = TextToAudio.from_pretrained(args.model, **({"t5_path": args.t5} if args.t5 else {}))
    init = load_audio(args.init_audio) if args.init_audio else None
    clips: list = [None] * len(prompts)
    sr = pipe.sample_rate
    for group in _groups(prompts, durations):
        audio, sr = pipe.generate(
            [prompts[i] for i in group],
            seconds_total=args.seconds_start + durations[group[0]],
            seconds_start=args.seconds_start,
            steps=args.steps,
            cfg_scale=args.cfg,
            sampler=args.sampler,
            seed=args.seed + group[0],
            negative_prompt=args.negative,
            batch=args.batch,
            init_audio=init,
            init_noise_level=args.init_noise,
            progress=not args.no_progress,
        )
        for i, clip in zip(group, audio):
            clips[i] = clip
    return clips, sr
