"""``wavefoundry generate --model MASKED_DIR``: the masked-transformer branch of ``wavefoundry generate``."""

from __future__ import annotations

import argparse


def _stage_steps(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"--stage-steps must be comma-separated integers (e.g. 20,10,10,10), got {text!r}") from None


def generate_masked(args: argparse.Namespace, prompts: list[str], durations: list[float],
                    groups: list[list[int]]) -> tuple[list, int]:  # fmt: skip
    """Clips of a masked-audio model (``pipelines/masked.py``), in prompt order, and their sample rate."""
    from wavefoundry.audio.io import load_audio
    from wavefoundry.pipelines.masked import MaskedAudioGen

    if args.inpaint is not None and args.init_audio is None:
        raise ValueError("--inpaint START END needs --init-audio (the audio to inpaint)")
    pipe = MaskedAudioGen.from_pretrained(args.model)
    init = load_audio(args.init_audio) if args.init_audio else None
    place = {}
    if init is not None and args.inpaint is not None:
        place["inpaint"] = (init[0], init[1], args.inpaint[0], args.inpaint[1])
    elif init is not None:
        place["prefix"] = init
    sampling = {"steps": _stage_steps(args.stage_steps), "cfg_scale": args.cfg, "cfg_min": args.cfg_min,
                "temperature": args.temperature, "top_p": args.top_p}  # fmt: skip
    clips: list = [None] * len(prompts)
    for group in groups:
        audio, _ = pipe.generate([prompts[i] for i in group], seconds=durations[group[0]], seed=args.seed + group[0],
                                  batch=args.batch, negative_prompt=args.negative, progress=not args.no_progress,
                                  **sampling, **place)  # fmt: skip
        for i, clip in zip(group, audio):
            clips[i] = clip
    return clips, pipe.sample_rate
