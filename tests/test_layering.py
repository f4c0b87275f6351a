"""Enforce DESIGN.md's layering rules by walking every import of the package."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "wavefoundry"
MODELS = {"codecs", "diffusion", "lm", "understanding", "conditioning"}
# package -> wavefoundry packages it may import (itself always allowed). "audio" is a base layer (numpy/torch
# signal processing) that models may use for their feature front ends.
ALLOWED = {
    "config": set(),
    "nn": set(),
    "audio": {"config"},
    **{m: {"nn", "audio", "config"} for m in MODELS},
    "data": {"audio", "config"},
    "eval": {"audio", "config", "nn", "understanding"},  # embedder networks (OpenL3, PaSST, ...) live in understanding
    "scaling": {"config", "lm", "train"},  # flops read decoder shapes; isoflop runs sweeps through the engine
    "formats": {"nn", "config", *MODELS},
    "train": {"config", "audio", "data", "nn", *MODELS},
    "pipelines": {"config", "audio", "nn", "train", "formats", *MODELS},
    "presets": {"config", "data", "train", *MODELS},
    "web": {"pipelines", "config", "audio"},  # audio: reading uploads, writing WAV/FLAC, spectrogram pictures
    "cli": None,  # the CLI may import anything
}
MODEL_FORBIDDEN_THIRD_PARTY = ("torch.distributed",)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _layer(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


FILES = sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_layering(path):
    layer = _layer(path)
    assert layer in ALLOWED, f"new top-level module {layer!r}: add it to the layering rules"
    allowed = ALLOWED[layer]
    for name in _imports(path):
        if layer in MODELS or layer == "nn":
            assert not name.startswith(MODEL_FORBIDDEN_THIRD_PARTY), f"{path}: models may not import {name}"
        if allowed is None or not name.startswith("wavefoundry."):
            continue
        target = name.split(".")[1]
        assert target == layer or target in allowed, f"{path.relative_to(ROOT)} ({layer}) imports {name}"


def test_rules_catch_a_violation(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("import wavefoundry.train.engine\nfrom torch.distributed import fsdp\n")
    assert _imports(bad) == ["wavefoundry.train.engine", "torch.distributed"]
