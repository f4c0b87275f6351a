"""``wavefoundry lm asr|tts|continue|eval`` end to end on a tiny exported audio LM."""

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from tests.train.test_lm import HOP, SR, make_codec, make_manifest, tiny_config, tone_speech
from wavefoundry.cli import main
from wavefoundry.cli.lm import heldout_nll
from wavefoundry.codecs.semantic import char_error_rate
from wavefoundry.pipelines import AudioLM
from wavefoundry.train.engine import train
from wavefoundry.train.tasks import build_task

CHAR_FRAMES = 4  # codec frames per character of tone speech


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-cli")
    speech = make_manifest(root), make_codec(root / "codec"), root
    cfg = tiny_config(speech)
    cfg.train = dataclasses.replace(cfg.train, steps=4, eval_every=0, ckpt_every=4)
    train(build_task(cfg), root / "run")
    assert main(["export", str(root / "run"), "--out", str(root / "model")]) == 0  # `wavefoundry export` of an lm run
    sf.write(root / "q.wav", tone_speech("abcd"), SR)
    return root


def test_asr_prints_one_line_per_file(model, capsys):
    q = str(model / "q.wav")
    assert main(["lm", "asr", q, q, "--model", str(model / "model"), "--max-new-tokens", "6"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(q + "\t") for line in lines)
    lm = AudioLM.from_pretrained(model / "model")
    assert lines[0].split("\t", 1)[1] == lm.asr(tone_speech("abcd"), SR, max_new_tokens=6)  # greedy: the same
    manifest = str(model / "manifest.jsonl")
    assert main(["lm", "asr", q, "--model", str(model / "model"), "--few-shot", "2", "--manifest", manifest]) == 0


def test_tts_and_continue_write_audio(model, capsys):
    out = model / "tts.wav"
    args = ["lm", "tts", "abc", "--model", str(model / "model"), "--out", str(out), "--seconds-max", "0.5"]
    assert main([*args, "--seed", "3", "--top-k", "20", "--top-p", "0.9", "--temperature", "0.8"]) == 0
    audio, sr = sf.read(out)
    assert sr == SR and len(audio) <= 0.5 * SR and len(audio) % HOP == 0
    cont = model / "cont.wav"
    assert main(["lm", "continue", str(model / "q.wav"), "--model", str(model / "model"), "--seconds", "0.2",
                 "--out", str(cont)]) == 0  # fmt: skip
    audio, sr = sf.read(cont)
    assert sr == SR and 4 * CHAR_FRAMES * HOP <= len(audio) <= (4 * CHAR_FRAMES + 12) * HOP


def test_eval_writes_the_metrics(model, capsys):
    out = model / "results.json"
    args = ["lm", "eval", "--model", str(model / "model"), "--manifest", str(model / "manifest.jsonl"),
            "--split", "valid", "--limit", "2", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    results = json.loads(out.read_text())
    assert results["n_utterances"] == 2 and len(results["items"]) == 2
    assert results["tts_cer_ceiling"] == results["asr_cer"]
    refs = [r["transcript"] for r in results["items"]]
    assert results["asr_cer"] == pytest.approx(char_error_rate([r["asr"] for r in results["items"]], refs))
    assert results["tts_cer"] == pytest.approx(char_error_rate([r["tts_asr"] for r in results["items"]], refs))
    codes_cer = char_error_rate([r["tts_asr_codes"] for r in results["items"]], refs)
    assert results["tts_cer_codes"] == pytest.approx(codes_cer)
    parts = sum(results[f"nll_{m}"] * results[f"tokens_{m}"] for m in ("text", "audio", "special"))
    assert parts / results["tokens"] == pytest.approx(results["nll"], rel=1e-5)
    assert np.isfinite(results["nll_text"]) and np.isfinite(results["nll_audio"])
    assert heldout_nll(AudioLM.from_pretrained(model / "model"), [])["tokens"] == 0


def test_errors_are_one_line(model, capsys, tmp_path):
    m = str(model / "model")
    assert main(["lm", "tts", "  ", "--model", m, "--out", str(tmp_path / "x.wav")]) == 2
    assert "non-empty" in capsys.readouterr().err
    assert main(["lm", "tts", "abc", "--model", m, "--out", str(tmp_path / "x.wav"), "--seconds-max", "100"]) == 2
    err = capsys.readouterr().err
    assert "max_seq_len=256" in err and len(err.strip().splitlines()) == 1
    assert main(["lm", "asr", str(model / "q.wav"), "--model", str(tmp_path)]) == 2
    assert "wavefoundry.json" in capsys.readouterr().err
    assert main(["lm", "asr", str(model / "q.wav"), "--model", m, "--few-shot", "1"]) == 2
    assert "--manifest" in capsys.readouterr().err
