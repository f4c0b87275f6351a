"""``wavefoundry eval recon``: reconstruction metrics (auraloss-default MR-STFT, mel distance, SI-SDR) as JSON.

    wavefoundry eval recon data/synthcaps/manifest.jsonl --model models/codec-tiny --split valid --out recon.json
    wavefoundry eval recon references/ --estimates reconstructions/ --out recon.json
    wavefoundry eval recon manifest.jsonl --model DIR --split valid --save-dir recon/   (also keep <name>.wav)

With ``--save-dir``, each reconstruction is written as ``<name>.wav``, so ``wavefoundry eval adherence
--audio-dir`` can score how much pitch and pan survive the codec.

With ``--model``, every reference is encoded and decoded by the codec (resampled to its rate first) and scored at
the codec's rate. With ``--estimates``, files are paired by relative path (any audio suffix). A file that cannot
be scored gets a per-file ``error`` entry; the means cover the scored files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EVAL_DOC = """Evaluation metrics as JSON (docs/evaluation.md): generate (benchmark prompt files), fd, kl, clap,
adherence, memorization, recon, captions (CIDEr-D, BLEU-4, ROUGE-L, WAR/UAR, mAP), convert-clap (original
LAION-CLAP checkpoints -> --model laion-clap), and report (one HTML page of the results).
``wavefoundry eval SUBCOMMAND -h`` shows each one's usage."""

ADHERENCE_DOC = """``wavefoundry eval adherence``: does generated audio have the pitch, pan, duration, tempo and class
that its SynthCaps prompt asked for? (docs/adherence.md)

    wavefoundry eval adherence data/synthcaps/manifest.jsonl --audio-dir generated/ --out adherence.json
    wavefoundry eval adherence data/synthcaps/manifest.jsonl --out ceiling.json      (the real audio: the ceiling)
    wavefoundry eval adherence data/synthcaps/manifest.jsonl --audio-dir generated/ --shuffle --out floor.json

Clips in --audio-dir are named <item id>.wav (any audio suffix). Items without a clip, or whose clip cannot be
decoded, are listed under "errors" and left out; the accuracies cover the scored clips. --shuffle scores each
clip against the attrs of another scored item (a derangement fixed by --seed). --classifier takes a SynthCaps
tagger (``wavefoundry demo`` trains one) and adds class_ok.
"""


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluation metrics", description=EVAL_DOC,
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    cmds = ev.add_subparsers(dest="eval_command", required=True, metavar="SUBCOMMAND")
    p = cmds.add_parser("recon", help="reconstruction metrics of a codec or of paired files", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("references", type=Path, help="manifest.jsonl or a folder of audio")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", type=Path, help="exported autoencoder: reconstruct the references with it")
    group.add_argument("--estimates", type=Path, help="folder of estimates paired with the references by path")
    p.add_argument("--split", help="only manifest items of this split (e.g. valid)")
    p.add_argument("--limit", type=int, help="score at most this many files")
    p.add_argument("--out", type=Path, help="write the JSON here (default: print it)")
    p.add_argument("--save-dir", type=Path, help="with --model: also write reconstructions here (<name>.wav, float)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_recon)
    p = cmds.add_parser("adherence", help="prompt adherence of clips to their SynthCaps attrs (pitch, pan, ...)",
                        description=ADHERENCE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("manifest", type=Path, help="manifest.jsonl whose items' attrs the clips are scored against")
    p.add_argument("--audio-dir", type=Path, help="folder of <item id>.wav clips (default: the manifest's own audio)")
    p.add_argument("--classifier", type=Path, help="tagger run or checkpoint directory: adds class accuracy")
    p.add_argument("--shuffle", action="store_true", help="score each clip against another item's attrs (the floor)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --shuffle derangement (default 0)")
    p.add_argument("--split", help="only manifest items of this split (e.g. valid)")
    p.add_argument("--limit", type=int, help="score at most this many items")
    p.add_argument("--out", type=Path, help="write the JSON report here (the table is always printed)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_adherence)
    from wavefoundry.cli import eval_captions, eval_convert, eval_generate, eval_metrics

    eval_generate.register(cmds)
    eval_metrics.register(cmds)
    eval_convert.register(cmds)
    eval_captions.register(cmds)


def reference_files(path: Path, split: str | None) -> list[tuple[str, Path]]:
    """(name, file) pairs from a manifest (name = item id) or a folder (name = relative path)."""
    from wavefoundry.audio.io import AUDIO_SUFFIXES
    from wavefoundry.data.manifest import read_manifest

    if path.is_file():
        return [(it.id, Path(it.path)) for it in read_manifest(path) if split is None or it.split == split]
    if not path.is_dir():
        raise FileNotFoundError(f"not a manifest or folder: {path}")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    return [(str(p.relative_to(path)), p) for p in files]


def _pairs(refs, args, codec):
    from wavefoundry.audio.io import AUDIO_SUFFIXES, AudioError, load_audio
    from wavefoundry.cli.codec import load_for_codec

    for name, ref_path in refs:
        try:
            if codec is not None:
                ref, sr = load_for_codec(ref_path, codec, resample=True)
                yield name, ref, codec.reconstruct(ref, sr), sr
                continue
            ref, sr = load_audio(ref_path)
            stem = args.estimates / Path(name).with_suffix("")
            found = [stem.with_suffix(s) for s in sorted(AUDIO_SUFFIXES) if stem.with_suffix(s).is_file()]
            if not found:
                yield name, f"no estimate for {name} in {args.estimates}", None, sr
                continue
            est, est_sr = load_audio(found[0])
            if est_sr != sr:
                yield name, f"estimate is {est_sr} Hz, reference {sr} Hz", None, sr
                continue
            yield name, ref, est, sr
        except (AudioError, ValueError) as exc:
            yield name, str(exc), None, 0


def run_recon(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from wavefoundry.audio.io import save_audio
    from wavefoundry.eval.recon import evaluate_pair, summarize
    from wavefoundry.pipelines import Codec

    refs = reference_files(args.references, args.split)[: args.limit]
    if not refs:
        raise ValueError(f"no reference files in {args.references}" + (f" (split {args.split})" if args.split else ""))
    if args.save_dir is not None and args.model is None:
        raise ValueError("--save-dir needs --model (it keeps the codec's reconstructions)")
    codec = Codec.from_pretrained(args.model) if args.model else None
    per_file = []
    for name, ref, est, sr in tqdm(_pairs(refs, args, codec), total=len(refs), desc="recon", disable=args.no_progress):
        row = {"name": name, "error": ref} if est is None else evaluate_pair(name, ref, est, sr)
        per_file.append(row)
        if args.save_dir is not None and "error" not in row:
            save_audio(args.save_dir / Path(name).with_suffix(".wav"), est, sr, subtype="FLOAT")  # exact, unclipped
    report = {"references": str(args.references), "model": str(args.model) if args.model else None,
              "per_file": per_file, **summarize(per_file)}  # fmt: skip
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        print(json.dumps({k: report[k] for k in ("mean", "num_files", "num_scored", "num_errors")}))
    else:
        print(text)
    return 0


def tagger_classifier(path: Path):
    """(classify(audio, sr) -> label, label_of(attrs) -> label or None) of a trained SynthCaps tagger."""
    import numpy as np
    import torch

    from wavefoundry.audio.resample import resample
    from wavefoundry.train.tagging import synthcaps_label
    from wavefoundry.train.tasks import load_model

    task, model = load_model(path)
    if task.name != "tagger":
        raise ValueError(f"{path} is a '{task.name}' run, not a tagger")
    labels, rate = task.config.model.labels, task.config.model.mel.sample_rate

    @torch.inference_mode()
    def classify(audio: np.ndarray, sr: int) -> str:
        x = np.ascontiguousarray(resample(audio, sr, rate), dtype=np.float32)
        return labels[int(model(torch.from_numpy(x)[None]).argmax(-1))]  # (1, C, T) -> (1, n_labels)

    def label_of(attrs: dict) -> str | None:
        try:
            return synthcaps_label(attrs)
        except (KeyError, ValueError):  # not a SynthCaps item: class does not apply
            return None

    return classify, label_of


def _clip_path(item, audio_dir: Path | None) -> Path | None:
    from wavefoundry.audio.io import AUDIO_SUFFIXES

    if audio_dir is None:
        return Path(item.path)
    found = [audio_dir / f"{item.id}{s}" for s in (".wav", *sorted(AUDIO_SUFFIXES - {".wav"}))]
    return next((f for f in found if f.is_file()), None)


def adherence_table(summary: dict) -> str:
    """The summary as a fixed-width table: metric, accuracy, n, 95 % Wilson interval."""
    lines = [f"{'metric':12s} {'accuracy':>8s} {'n':>6s}  95% CI"]
    for metric, s in summary.items():
        acc = "-" if s["accuracy"] is None else f"{s['accuracy']:.3f}"
        ci = "-" if s["ci95"] is None else f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"
        lines.append(f"{metric:12s} {acc:>8s} {s['n']:>6d}  {ci}")
    return "\n".join(lines)


def run_adherence(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from wavefoundry.audio.io import AudioError, load_audio
    from wavefoundry.data.manifest import read_manifest
    from wavefoundry.eval.adherence import derangement, score_item, summarize

    items = [it for it in read_manifest(args.manifest) if args.split is None or it.split == args.split][: args.limit]
    if not items:
        raise ValueError(f"no items in {args.manifest}" + (f" (split {args.split})" if args.split else ""))
    if args.audio_dir is not None and not args.audio_dir.is_dir():
        raise FileNotFoundError(f"--audio-dir is not a folder: {args.audio_dir}")
    classify, label_of = tagger_classifier(args.classifier) if args.classifier else (None, None)
    paths = {it.id: _clip_path(it, args.audio_dir) for it in items}
    errors = [{"id": it.id, "error": f"no clip named {it.id}.wav in {args.audio_dir}"} for it in items
              if paths[it.id] is None]  # fmt: skip
    clips = [it for it in items if paths[it.id] is not None]
    targets = [clips[j] for j in derangement(len(clips), args.seed)] if args.shuffle else clips
    rows = []
    for clip, target in tqdm(list(zip(clips, targets)), desc="adherence", disable=args.no_progress):
        try:
            audio, sr = load_audio(paths[clip.id])
            scores = score_item(audio, sr, target.attrs, classify=classify, label_of=label_of)
        except AudioError as exc:
            errors.append({"id": clip.id, "error": str(exc)})
            continue
        rows.append({"id": clip.id, **({"scored_against": target.id} if args.shuffle else {}), **scores})
    summary = summarize(rows)
    report = {"manifest": str(args.manifest), "audio_dir": str(args.audio_dir) if args.audio_dir else None,
              "classifier": str(args.classifier) if args.classifier else None, "shuffle": args.shuffle,
              "seed": args.seed if args.shuffle else None, "n_items": len(items), "n_scored": len(rows),
              "errors": errors, "summary": summary, "rows": rows}  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(adherence_table(summary))
    print(f"scored {len(rows)} of {len(items)} items" + (f", {len(errors)} errors" if errors else "")
          + (f" (shuffled prompts, seed {args.seed})" if args.shuffle else ""))  # fmt: skip
    return 0
