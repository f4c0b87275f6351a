"""``wavefoundry demo [t2a|tagger]``: the main jobs on built-in data and models.

``t2a`` (the default, ``make demo``): text-to-audio with the built-in model (``--model``, default
models/t2a-tiny): generates a set of SynthCaps-style prompts to WAV files and writes ``index.html`` (audio
players, spectrograms, prompts, timing) into ``--out`` (default runs/demo-t2a). ``--retrain`` first reproduces
the model from scratch with the project's recipe (``codec-stereo`` then ``t2a-tiny``; about 1.5 hours on 2 CPU
cores, estimated) and exports it to ``--model``.

``tagger``: generates SynthCaps (cached under data/cache), trains the ``tagger-tiny`` preset into ``runs/demo``
(resuming a previous, unfinished demo run), and prints validation accuracy per class. Run again, it only
re-evaluates.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="text-to-audio demo page (or the tagger job)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("job", nargs="?", default="t2a", choices=("t2a", "tagger"), help="which demo (default t2a)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default runs/demo or runs/demo-t2a)")
    p.add_argument("--model", type=Path, default=Path("models/t2a-tiny"), help="t2a: model directory")
    p.add_argument("--steps", type=int, default=50, help="t2a: sampler steps (default 50)")
    p.add_argument("--cfg", type=float, default=5.0, help="t2a: guidance scale (default 5)")
    p.add_argument("--seed", type=int, default=0, help="t2a: noise seed (default 0)")
    p.add_argument("--retrain", action="store_true", help="t2a: reproduce the default model from scratch first")
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
    if args.job == "t2a":
        return run_t2a(args)
    args.out = args.out or Path("runs/demo")
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


#: The demo's prompts: SynthCaps-style captions covering pitch, pan, duration, drums and textures.
DEMO_PROMPTS = (
    "a sine-wave synth playing a single A4 note (lasting about 2.0 seconds)",
    "a bright sawtooth synth holding the note C3, panned hard left",
    "a plucked guitar-like string playing a single E4 note, panned right",
    "a chiptune square lead playing an up-and-down C major arpeggio at 120 BPM",
    "a flute-like organ holding a sustained G major chord",
    "a tight syncopated rock drum beat 100 BPM",
    "pouring rain against a window pane",
    "a siren slowly rising and falling",
)


def retrain_t2a(model_dir: Path) -> None:
    """The default model's recipe: codec-stereo -> export -> t2a-tiny (SynthCaps latents) -> export."""
    from wavefoundry.cli.train import resolve_config
    from wavefoundry.train import checkpoint as ckpt
    from wavefoundry.train.engine import train
    from wavefoundry.train.export import export_model
    from wavefoundry.train.tasks import build_task

    codec_run, codec_dir, t2a_run = Path("runs/codec-stereo"), model_dir.parent / "codec-stereo", Path("runs/t2a-tiny")
    resume = ckpt.latest_checkpoint(codec_run) is not None
    train(build_task(resolve_config("codec-stereo", [], codec_run, resume)), codec_run, resume=resume)
    export_model(codec_run, codec_dir)
    resume = ckpt.latest_checkpoint(t2a_run) is not None
    config = resolve_config("t2a-tiny", [f"data.codec={codec_dir}"], t2a_run, resume)
    train(build_task(config), t2a_run, resume=resume)
    export_model(t2a_run, model_dir)


def run_t2a(args: argparse.Namespace) -> int:
    import time

    from wavefoundry.audio.io import save_audio
    from wavefoundry.eval.report import write_demo_page
    from wavefoundry.pipelines import TextToAudio

    out = args.out or Path("runs/demo-t2a")
    if args.retrain:
        retrain_t2a(args.model)
    if not (args.model / "config.json").is_file():
        raise FileNotFoundError(f"{args.model}: no text-to-audio model here; pass --model DIR or --retrain")
    pipe = TextToAudio.from_pretrained(args.model)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, prompt in enumerate(DEMO_PROMPTS):
        start = time.perf_counter()
        audio, sr = pipe.generate([prompt], seconds_total=4.0, steps=args.steps, cfg_scale=args.cfg,
                                  sampler="dpmpp-3m-sde", seed=args.seed + i)  # fmt: skip
        elapsed = time.perf_counter() - start
        name = f"{i:03d}.wav"
        save_audio(out / name, audio[0], sr)
        entries.append({"prompt": prompt, "audio_path": name, "audio": audio[0], "sr": sr, "seed": args.seed + i,
                        "seconds_generated": elapsed, "seconds_audio": audio.shape[-1] / sr,
                        "settings": {"steps": args.steps, "cfg": args.cfg, "sampler": "dpmpp-3m-sde"}})  # fmt: skip
        print(f"[{i + 1}/{len(DEMO_PROMPTS)}] {elapsed:5.1f} s  {prompt}")
    total = sum(e["seconds_generated"] for e in entries)
    summary = {"model": str(args.model), "prompts": len(entries), "generation seconds (total)": round(total, 1)}
    index = write_demo_page(out, entries, title="wavefoundry text-to-audio demo", summary=summary)
    print(f"page: {index}")
    return 0
