"""``wavefoundry eval convert-clap``: an original LAION-CLAP checkpoint -> a local Hugging Face ClapModel folder.

    wavefoundry eval convert-clap 630k-audioset-best.pt --preset HTSAT-tiny --tokenizer models/roberta-base \\
        --out models/clap-630k
    wavefoundry eval convert-clap 630k-audioset-fusion-best.pt --preset HTSAT-tiny-fusion --tokenizer DIR --out DIR
    wavefoundry eval convert-clap music_audioset_epoch_15_esc_90.14.pt --preset HTSAT-base --tokenizer DIR --out DIR
    wavefoundry eval convert-clap state_dict.safetensors --config my_clap/config.json --tokenizer DIR --out DIR

then: wavefoundry eval clap generated/ --prompts prompts.csv --model laion-clap --weights models/clap-630k

The checkpoint is a laion_clap ``.pt`` (read with torch.load(weights_only=True)) or its state dict saved as
``.safetensors``. --preset picks the towers (HTSAT-tiny: the 630k checkpoints; HTSAT-tiny-fusion: the 630k fusion
ones; HTSAT-base: the music / music_speech ones); --config takes a ClapModel config.json instead. --out must be a
new or empty folder; it gets config.json, model.safetensors, preprocessor_config.json (laion_clap's front end: 50
to 14000 Hz, the model's truncation) and, with --tokenizer (a local roberta-base tokenizer folder), the tokenizer.
Without --tokenizer, copy one in before ``eval clap``. Any key the map does not know, a missing key or a wrong
shape (a wrong --preset) stops it with the key named and nothing written. See docs/laion_clap.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(cmds: argparse._SubParsersAction) -> None:
    """Add ``convert-clap`` to the ``eval`` subcommands."""
    from wavefoundry.formats.laion_clap import LAION_CLAP_PRESETS

    p = cmds.add_parser("convert-clap", help="convert an original LAION-CLAP .pt checkpoint for --model laion-clap",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("checkpoint", type=Path, help="laion_clap .pt checkpoint (or its state dict as .safetensors)")
    p.add_argument("--out", required=True, type=Path, help="new or empty folder for the Hugging Face ClapModel")
    towers = p.add_mutually_exclusive_group(required=True)
    towers.add_argument("--preset", choices=list(LAION_CLAP_PRESETS), help="the checkpoint's towers")
    towers.add_argument("--config", type=Path, help="a ClapModel config.json (or its folder) instead of --preset")
    p.add_argument("--tokenizer", type=Path, help="local roberta-base tokenizer folder to copy into --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wavefoundry.eval.laion_clap import ClapFrontendConfig, truncation_of
    from wavefoundry.formats.laion_clap import clap_config_file, convert_laion_clap_checkpoint, laion_clap_config

    config = laion_clap_config(args.preset) if args.preset else clap_config_file(args.config)
    frontend = ClapFrontendConfig(truncation=truncation_of(config))  # laion_clap's numbers, the model's truncation
    out = convert_laion_clap_checkpoint(
        args.checkpoint,
        args.out,
        config=config,
        tokenizer=args.tokenizer,
        feature_extractor=frontend.feature_extractor_kwargs(),
    )
    print(f"wrote {out} ({args.preset or args.config}, truncation {frontend.truncation})")
    if args.tokenizer is None:
        print(f"no --tokenizer: copy a roberta-base tokenizer (tokenizer.json or vocab.json + merges.txt) into {out}")
    print(f"use it with: wavefoundry eval clap GENERATED --prompts PROMPTS --model laion-clap --weights {out}")
    return 0
