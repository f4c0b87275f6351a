"""``wavefoundry eval recon``: reconstruction metrics (auraloss-default MR-STFT, mel distance, SI-SDR) as JSON.

    wavefoundry eval recon data/synthcaps/manifest.jsonl --model models/codec-tiny --split valid --out recon.json
    wavefoundry eval recon references/ --estimates reconstructions/ --out recon.json

With ``--model``, every reference is encoded and decoded by the codec (resampled to its rate first) and scored at
the codec's rate. With ``--estimates``, files are paired by relative path (any audio suffix). A file that cannot
be scored gets a per-file ``error`` entry; the means cover the scored files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluation metrics", description=__doc__,
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
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_recon)


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

    from wavefoundry.eval.recon import evaluate_pair, summarize
    from wavefoundry.pipelines import Codec

    refs = reference_files(args.references, args.split)[: args.limit]
    if not refs:
        raise ValueError(f"no reference files in {args.references}" + (f" (split {args.split})" if args.split else ""))
    codec = Codec.from_pretrained(args.model) if args.model else None
    per_file = []
    for name, ref, est, sr in tqdm(_pairs(refs, args, codec), total=len(refs), desc="recon", disable=args.no_progress):
        per_file.append({"name": name, "error": ref} if est is None else evaluate_pair(name, ref, est, sr))
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
