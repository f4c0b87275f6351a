"""``wavefoundry data avcaps|avscan``: audio-visual captioning data (docs/avcaps.md).

wavefoundry data avcaps --out data/avcaps --n 2000                 (procedural: SynthCaps audio + pictures)
wavefoundry data avscan my_clips/ --out data/my_av --license CC0-1.0   (a folder of audio/image/video/captions)
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(cmds: argparse._SubParsersAction) -> None:
    p = cmds.add_parser("avcaps", help="generate AVCaps: SynthCaps audio + pictures tied to the sound + captions")
    p.add_argument("--out", required=True, type=Path, help="output folder (audio/, images/, manifest.jsonl)")
    p.add_argument("--n", type=int, default=1000, help="number of items (default 1000)")
    p.add_argument("--seconds", type=float, default=4.0, help="item length in seconds (default 4)")
    p.add_argument("--sample-rate", type=int, default=16000, help="sample rate in Hz (default 16000)")
    p.add_argument("--channels", type=int, default=2, choices=(1, 2), help="1 or 2 (default 2)")
    p.add_argument("--image-size", type=int, default=224, help="picture width and height in pixels (default 224)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of items in the valid split")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of items in the test split")
    p.add_argument("--masked-fraction", type=float, default=0.15, help="share whose sound is replaced by static")
    p.add_argument("--hidden-fraction", type=float, default=0.15, help="share whose shapes are hidden by a curtain")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_avcaps)

    p = cmds.add_parser("avscan", help="folder of audio + image/video + captions -> manifest.jsonl, rejects.jsonl")
    p.add_argument("root", type=Path, help="folder searched recursively; files sharing a stem form one item")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--license", default="", help="licence of items whose caption JSON names none (e.g. CC0-1.0)")
    p.add_argument("--allow", nargs="+", metavar="ID", help="licence ids to keep (default: CC0, CC-BY, Sampling+)")
    p.add_argument("--frames", type=int, default=8, help="frames a video must yield (default 8)")
    p.add_argument("--min-seconds", type=float, default=0.1, help="reject shorter audio (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.add_argument("--valid-fraction", type=float, default=0.0, help="share of items in the valid split")
    p.add_argument("--test-fraction", type=float, default=0.0, help="share of items in the test split")
    p.set_defaults(func=run_avscan)


def run_avcaps(args: argparse.Namespace) -> int:
    from wavefoundry.data.avcaps import AVCapsConfig, generate_avcaps

    cfg = AVCapsConfig(n_items=args.n, seconds=args.seconds, sample_rate=args.sample_rate, channels=args.channels,
                       image_size=args.image_size, seed=args.seed, valid_fraction=args.valid_fraction,
                       test_fraction=args.test_fraction, masked_fraction=args.masked_fraction,
                       hidden_fraction=args.hidden_fraction)  # fmt: skip
    manifest = generate_avcaps(args.out, cfg, workers=args.workers, progress=not args.no_progress)
    print(f"wrote {cfg.n_items} items to {manifest}")
    return 0


def run_avscan(args: argparse.Namespace) -> int:
    from wavefoundry.data.avcaps_folder import scan_av_folder
    from wavefoundry.data.licenses import LicensePolicy

    policy = LicensePolicy(allow=frozenset(args.allow)) if args.allow else None
    report = scan_av_folder(args.root, args.out, license=args.license, policy=policy, n_frames=args.frames,
                            min_seconds=args.min_seconds, seed=args.seed, valid_fraction=args.valid_fraction,
                            test_fraction=args.test_fraction)  # fmt: skip
    print(report.summary())
    return 0
