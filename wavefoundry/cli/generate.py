"""``wavefoundry generate``: text -> audio with a text-to-audio model.

    wavefoundry generate "a sine-wave synth playing a single C4 note" --model models/t2a-tiny --seconds 4 --out a.wav
    wavefoundry generate "rain" "a siren" --model DIR --steps 50 --cfg 6 --sampler dpmpp-3m-sde --seed 1 --out outdir/
    wavefoundry generate --prompts prompts.txt --model DIR --out outdir/

One prompt and ``--out x.wav`` writes that file; several prompts (or ``--prompts FILE``, one per line) write
``000.wav, 001.wav, ...`` into the ``--out`` folder with a ``prompts.tsv`` index. The same seed gives the same audio.
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
    p.add_argument("--t5", type=Path, default=None, help="local T5 directory for official Stable Audio checkpoints")
    p.add_argument("--out", required=True, type=Path, help="output .wav (one prompt) or folder")
    p.add_argument("--seconds", type=float, default=4.0, help="duration in seconds (default 4)")
    p.add_argument("--seconds-start", type=float, default=0.0, help="seconds_start condition (default 0)")
    p.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
    p.add_argument("--cfg", type=float, default=6.0, help="classifier-free guidance scale (default 6)")
    p.add_argument("--sampler", default="dpmpp-3m-sde", help="euler, heun, dpmpp-2m, dpmpp-2m-sde, dpmpp-3m-sde")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--negative", default=None, help="negative prompt")
    p.add_argument("--batch", type=int, default=4, help="prompts generated together (default 4)")
    p.add_argument("--init-audio", type=Path, default=None, help="audio to start from (audio-to-audio)")
    p.add_argument("--init-noise", type=float, default=1.0, help="noise level (sigma) for --init-audio")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def read_prompts(args: argparse.Namespace) -> list[str]:
    """Prompts from the command line and ``--prompts`` (blank lines skipped)."""
    prompts = list(args.prompt)
    if args.prompts is not None:
        lines = [line.strip() for line in args.prompts.read_text(encoding="utf-8").splitlines()]
        prompts += [line for line in lines if line]
    if not prompts:
        raise ValueError("give at least one prompt (positional or --prompts FILE)")
    if len(prompts) > MAX_PROMPT_FILE_LINES:
        raise ValueError(f"at most {MAX_PROMPT_FILE_LINES} prompts per run, got {len(prompts)}")
    return prompts


def run(args: argparse.Namespace) -> int:
    from wavefoundry.audio.io import load_audio, save_audio
    from wavefoundry.pipelines import MAX_PROMPTS, TextToAudio

    prompts = read_prompts(args)
    single = len(prompts) == 1 and args.out.suffix.lower() in (".wav", ".flac", ".ogg")
    pipe = TextToAudio.from_pretrained(args.model, **({"t5_path": args.t5} if args.t5 else {}))
    init = load_audio(args.init_audio) if args.init_audio else None
    start = time.perf_counter()
    clips = []
    for first in range(0, len(prompts), MAX_PROMPTS):
        audio, sr = pipe.generate(
            prompts[first : first + MAX_PROMPTS],
            seconds_total=args.seconds_start + args.seconds,
            seconds_start=args.seconds_start,
            steps=args.steps,
            cfg_scale=args.cfg,
            sampler=args.sampler,
            seed=args.seed + first,
            negative_prompt=args.negative,
            batch=args.batch,
            init_audio=init,
            init_noise_level=args.init_noise,
            progress=not args.no_progress,
        )
        clips += list(audio)
    elapsed = time.perf_counter() - start
    if single:
        save_audio(args.out, clips[0], sr)
        print(f"wrote {args.out} ({args.seconds:g} s, generated in {elapsed:.1f} s)")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (prompt, clip) in enumerate(zip(prompts, clips)):
        save_audio(args.out / f"{i:03d}.wav", clip, sr)
        rows.append(f"{i:03d}.wav\t{prompt}")
    (args.out / "prompts.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    settings = {k: getattr(args, k) for k in ("seconds", "steps", "cfg", "sampler", "seed", "negative")}
    settings.update(model=str(args.model), seconds_elapsed=round(elapsed, 2))
    (args.out / "generate.json").write_text(json.dumps(settings, indent=2) + "\n")
    print(f"wrote {len(clips)} clips to {args.out} in {elapsed:.1f} s")
    return 0
