"""The wavefoundry command: one-line errors, data commands on a messy folder, train + kill -9 + resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from wavefoundry.cli import main
from wavefoundry.train import checkpoint as ckpt

TINY = [
    "--set", "data.synth.n_items=48", "--set", "data.synth.seconds=1.0", "--set", "data.clip.seconds=1.0",
    "--set", "model.width=8", "--set", "model.depth=2", "--set", "model.embed_dim=16",
    "--set", "train.batch_size=8", "--set", "train.log_every=1", "--set", "train.eval_every=0",
    "--set", "train.progress=false", "--set", "train.tensorboard=false",
]  # fmt: skip


def _run(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "wavefoundry.cli", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_unknown_config_key_is_one_clear_line(capsys):
    assert main(["train", "tagger-tiny", "--set", "optim.lrr=3", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown config key 'lrr' in section 'optim'; valid keys: betas, eps")
    assert "\n" not in err and "Traceback" not in err


def test_unknown_preset_and_debug_traceback(capsys):
    assert main(["train", "nope"]) == 2
    assert "valid presets" in capsys.readouterr().err
    with pytest.raises(ValueError, match="valid presets"):
        main(["--debug", "train", "nope"])


def test_print_config_applies_overrides(capsys):
    assert main(["train", "tagger-tiny", "--set", "optim.lr=0.5", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["optim"]["lr"] == 0.5


def _messy_folder(root: Path) -> dict[str, bool]:
    """Audio files with sidecars: name -> expected to be kept."""
    root.mkdir()
    sr = 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32)
    meta = {"title": "tone", "creator": "me", "license": "CC0-1.0", "tags": ["sine"]}
    expected = {}

    def add(name, keep, *, sidecar=meta, write=None):
        path = root / name
        if write is None:
            sf.write(path, tone, sr)
        else:
            write(path)
        if sidecar is not None:
            path.with_suffix(".json").write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
        expected[name] = keep

    add("good.wav", True)
    add("good_stereo.flac", True, write=lambda p: sf.write(p, np.stack([tone, -tone], 1), 44100))
    add("good_by.ogg", True, sidecar={**meta, "license": "https://creativecommons.org/licenses/by/4.0/"},
        write=lambda p: sf.write(p, tone, sr, format="OGG", subtype="VORBIS"))  # fmt: skip
    add("corrupt.wav", False, write=lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk"))
    add("empty.flac", False, write=lambda p: p.write_bytes(b""))
    add("nan.wav", False, write=lambda p: sf.write(p, np.full(sr, np.nan, np.float32), sr, subtype="FLOAT"))
    add("nc.wav", False, sidecar={**meta, "license": "CC-BY-NC-4.0"})
    add("nolicense.wav", False, sidecar={"title": "x"})
    add("nometa.wav", False, sidecar=None)
    add("badjson.wav", False, sidecar="{oops")
    add("text_as.mp3", False, write=lambda p: p.write_text("not audio at all"))
    add("zero_frames.wav", False, write=lambda p: sf.write(p, np.zeros(0, np.float32), sr))
    add("silent.wav", False, write=lambda p: sf.write(p, np.zeros(sr, np.float32), sr))
    add("blip.wav", False, write=lambda p: sf.write(p, tone[:100], sr))  # 6 ms: shorter than --min-seconds
    add("six_channels.wav", True, write=lambda p: sf.write(p, np.stack([tone * (k + 1) / 7 for k in range(6)], 1), sr))
    return expected


def test_scan_shard_inspect_on_messy_folder(tmp_path):
    expected = _messy_folder(tmp_path / "in")
    proc = _run(tmp_path, "data", "scan", "in", "--out", "ds", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    kept = [json.loads(line)["path"] for line in (tmp_path / "ds/manifest.jsonl").read_text().splitlines()]
    rejects = [json.loads(line) for line in (tmp_path / "ds/rejects.jsonl").read_text().splitlines()]
    assert sorted(Path(p).name for p in kept) == sorted(k for k, keep in expected.items() if keep)
    assert sorted(Path(r["path"]).name for r in rejects) == sorted(k for k, keep in expected.items() if not keep)
    assert all(r["reason"] for r in rejects)
    attribution = (tmp_path / "ds/ATTRIBUTION.csv").read_text()
    assert "creativecommons.org/licenses/by/4.0" in attribution and "good.wav" not in attribution
    proc = _run(tmp_path, "data", "shard", "ds/manifest.jsonl", "--out", "shards", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    proc = _run(tmp_path, "data", "inspect", "shards", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["items"] == 4
    kinds = {Path(r["path"]).name: r["kind"] for r in rejects}
    assert (
        kinds["silent.wav"] == "silent" and kinds["blip.wav"] == "too short" and kinds["nan.wav"] == "non-finite audio"
    )


def test_scan_missing_folder_is_one_line_error(tmp_path):
    proc = _run(tmp_path, "data", "scan", "nowhere", "--out", "ds")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_killed_training_resumes_exactly(tmp_path):
    args = ["train", "tagger-tiny", *TINY, "--set", "train.steps=24", "--set", "train.ckpt_every=4"]
    straight = _run(tmp_path, *args, "--out", "straight")
    assert straight.returncode == 0, straight.stderr

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "wavefoundry.cli", *args, "--out", "killed"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not any(
        c.name >= "step-00000008" for c in ckpt.list_checkpoints(tmp_path / "killed")
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = ckpt.latest_checkpoint(tmp_path / "killed")
    assert killed_at is not None and killed_at.name < "step-00000024", "run finished before it could be killed"

    resumed = _run(tmp_path, "train", "tagger-tiny", "--out", "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(ckpt.latest_checkpoint(tmp_path / "straight") / "model.safetensors"))
    b = load_file(str(ckpt.latest_checkpoint(tmp_path / "killed") / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [r["loss"] for r in map(json.loads, (tmp_path / "straight/metrics.jsonl").read_text().splitlines())]
    lb = [r["loss"] for r in map(json.loads, (tmp_path / "killed/metrics.jsonl").read_text().splitlines())]
    assert la == lb
