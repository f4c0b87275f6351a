"""``wavefoundry data synth|avcaps|avscan|speech|scan|shard|encode|inspect``: build and look at datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build and inspect datasets", description=__doc__)
    cmds = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    p = cmds.add_parser("synth", help="generate SynthCaps, the built-in captioned audio dataset")
    p.add_argument("--out", required=True, type=Path, help="output folder (audio/ + manifest.jsonl)")
    p.add_argument("--n", type=int, default=1000, help="number of items (default 1000)")
    p.add_argument("--seconds", type=float, default=4.0, help="item length in seconds (default 4)")
    p.add_argument("--sample-rate", type=int, default=16000, help="sample rate in Hz (default 16000)")
    p.add_argument("--channels", type=int, default=2, choices=(1, 2), help="1 or 2 (default 2)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of items in the valid split")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_synth)

    from wavefoundry.cli import data_avcaps

    data_avcaps.register(cmds)

    p = cmds.add_parser("speech", help="render a speech corpus with espeak-ng (built-in sentences or a text file)")
    p.add_argument("--out", required=True, type=Path, help="output folder (audio/ + manifest.jsonl)")
    p.add_argument("--items", type=int, default=1000, help="number of utterances (default 1000)")
    p.add_argument("--languages", default="en,de,fr,es,it", help="built-in sentence languages, comma-separated")
    p.add_argument("--text", type=Path, help="text file, one sentence per line (instead of built-in sentences)")
    p.add_argument("--language", default="", help="espeak-ng language of --text (e.g. en)")
    p.add_argument("--license", default="CC0-1.0", help="licence id of the --text sentences (default CC0-1.0)")
    p.add_argument("--sample-rate", type=int, default=16000, help="sample rate in Hz (default 16000)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of transcripts in the valid split")
    p.add_argument("--workers", type=int, default=None, help="render threads (default: cores, at most 4)")
    p.add_argument("--force", action="store_true", help="render again even if an identical build is there")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_speech)

    p = cmds.add_parser("scan", help="folder of audio + metadata -> manifest.jsonl, rejects.jsonl, ATTRIBUTION.csv")
    p.add_argument("root", type=Path, help="folder searched recursively for audio")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--metadata", default="auto", choices=("auto", "sidecar", "freesound", "fma"))
    p.add_argument("--freesound-json", type=Path, help="one JSON/JSONL file of Freesound sound objects")
    p.add_argument("--fma-tracks", type=Path, help="FMA tracks.csv (two-row header)")
    p.add_argument("--allow", nargs="+", metavar="ID", help="licence ids to keep (default: CC0, CC-BY, Sampling+)")
    p.add_argument("--seed", type=int, default=0, help="seed for prompts and the split")
    p.add_argument("--valid-fraction", type=float, default=0.0, help="share of items in the valid split")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="reject longer files (default 3600)")
    p.add_argument("--min-seconds", type=float, default=0.1, help="reject shorter files (default 0.1)")
    p.add_argument("--allow-silence", action="store_true", help="keep files that are digital silence")
    p.add_argument("--workers", type=int, default=None, help="decoding threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_scan)

    p = cmds.add_parser("shard", help="manifest -> WebDataset tar shards ({key}.flac + {key}.json)")
    p.add_argument("manifest", type=Path, help="manifest.jsonl")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--name", default="shard", help="shard name prefix (default 'shard')")
    p.add_argument("--max-items", type=int, default=1000, help="items per shard (default 1000)")
    p.add_argument("--max-mb", type=float, default=512.0, help="size limit per shard in MiB (default 512)")
    p.add_argument("--sample-rate", type=int, default=None, help="resample to this rate")
    p.add_argument("--channels", type=int, default=None, choices=(1, 2), help="convert to mono or stereo")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_shard)

    p = cmds.add_parser("encode", help="manifest -> latent set (VAE codec) or code set (discrete RVQ/FSQ codec)")
    p.add_argument("manifest", type=Path, help="manifest.jsonl")
    p.add_argument("--codec", required=True, type=Path, help="exported autoencoder (VAE, or discrete: a code set)")
    p.add_argument("--out", required=True, type=Path, help="output folder (latents.safetensors, items.jsonl, ...)")
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="encode long files in chunks of this length")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_encode)

    p = cmds.add_parser("inspect", help="summarise a manifest or a set of shards")
    p.add_argument("path", help="manifest.jsonl, a shard folder, a glob or a {000000..000009} range")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_inspect)


def run_synth(args: argparse.Namespace) -> int:
    from wavefoundry.data.synth import SynthConfig, generate_synthcaps

    cfg = SynthConfig(
        n_items=args.n,
        seconds=args.seconds,
        sample_rate=args.sample_rate,
        channels=args.channels,
        seed=args.seed,
        valid_fraction=args.valid_fraction,
    )
    manifest = generate_synthcaps(args.out, cfg, workers=args.workers, progress=not args.no_progress)
    print(f"wrote {cfg.n_items} items to {manifest}")
    return 0


def run_speech(args: argparse.Namespace) -> int:
    from wavefoundry.data.speech import SpeechConfig, build_speech

    cfg = SpeechConfig(
        n_items=args.items,
        languages=tuple(lang.strip() for lang in args.languages.split(",") if lang.strip()),
        sample_rate=args.sample_rate,
        seed=args.seed,
        valid_fraction=args.valid_fraction,
        text_file=str(args.text or ""),
        text_language=args.language,
        text_license=args.license,
    )
    report = build_speech(args.out, cfg, workers=args.workers, progress=not args.no_progress, force=args.force)
    print(report.summary())
    return 0


def run_scan(args: argparse.Namespace) -> int:
    from wavefoundry.data.licenses import LicensePolicy
    from wavefoundry.data.sources import scan_folder

    policy = LicensePolicy(allow=frozenset(args.allow)) if args.allow else None
    report = scan_folder(
        args.root,
        args.out,
        metadata=args.metadata,
        freesound_json=args.freesound_json,
        fma_tracks=args.fma_tracks,
        policy=policy,
        seed=args.seed,
        valid_fraction=args.valid_fraction,
        max_seconds=args.max_seconds,
        min_seconds=args.min_seconds,
        allow_silence=args.allow_silence,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(report.summary())
    return 0


def run_shard(args: argparse.Namespace) -> int:
    from wavefoundry.data.shards import write_shards

    paths = write_shards(
        args.manifest,
        args.out,
        name=args.name,
        max_items=args.max_items,
        max_bytes=int(args.max_mb * 2**20),
        sample_rate=args.sample_rate,
        channels=args.channels,
        progress=not args.no_progress,
    )
    print(f"wrote {len(paths)} shard(s) to {args.out}")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from wavefoundry.pipelines import Codec
    from wavefoundry.train.latents import encode_manifest

    model = Codec.from_pretrained(args.codec).model
    if model.is_discrete:  # a code set, the data of the masked transformer (docs/masked.md)
        from wavefoundry.train.codes import encode_manifest_codes

        out = encode_manifest_codes(model, args.manifest, args.out, codec_path=str(args.codec),
                                    chunk_seconds=args.chunk_seconds, progress=not args.no_progress)  # fmt: skip
        print(f"wrote codes to {out}")
        return 0
    out = encode_manifest(
        model,
        args.manifest,
        args.out,
        codec_path=str(args.codec),
        chunk_seconds=args.chunk_seconds,
        progress=not args.no_progress,
    )
    print(f"wrote latents to {out}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from wavefoundry.data.inspect import format_summary, summarize

    summary = summarize(args.path)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0
