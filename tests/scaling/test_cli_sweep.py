"""``wavefoundry scaling sweep`` end to end on tone "speech": plan, train, table, skip finished runs, resume an
unfinished one to the same loss, and the errors of bad input."""

import csv
import os
import shutil

import pytest

from tests.train.test_lm import make_codec
from tests.train.tone_speech import write_speech
from wavefoundry.cli import main
from wavefoundry.data.manifest import write_manifest
from wavefoundry.lm.decoder import DecoderConfig
from wavefoundry.scaling.flops import levanter_flops_per_token
from wavefoundry.scaling.isoflop import FamilyRule
from wavefoundry.scaling.table import COLUMNS
from wavefoundry.train import checkpoint as ckpt
from wavefoundry.train.lm import lm_speech_tiny
from wavefoundry.train.logging import read_metrics

VOCAB = 257 + 4 + 2 * 32  # the fixture corpus: its BPE text ids (257 on these transcripts) + specials + 2 x 32 codes
RULE = ["--head-ratio", "16", "--ffn-mult", "2"]
SEQ, BATCH = 32, 4


def per_step(dim):
    model = FamilyRule(head_ratio=16, ffn_mult=2.0).shape(dim, DecoderConfig(vocab_size=VOCAB, max_seq_len=SEQ))
    return levanter_flops_per_token(model, SEQ) * BATCH * SEQ


# d=32 lands exactly on 2 and 4 steps, d=24 on 3 and 6 (0.3% short); d=40 (1 and 3 steps) is 31% and 4% off.
BUDGETS = (2 * per_step(32), 4 * per_step(32))


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A small tone-speech corpus (encoding it with the codec is most of the sweep's time)."""
    root = tmp_path_factory.mktemp("sweep")
    texts = ["abc", "bca", "cab", "dab", "acd", "bdc", "dca", "abd"]
    items = write_speech(root, texts[:6]) + write_speech(root, texts[6:], split="valid", start=6)
    return write_manifest(root / "manifest.jsonl", items), make_codec(root / "codec"), root


def sweep_args(speech, out, *extra):
    manifest, codec, root = speech
    return [
        "scaling", "sweep", "--budgets", ",".join(repr(b) for b in BUDGETS), "--dims", "24,32,40", *RULE,
        "--batch-size", str(BATCH), "--out", str(out), *extra,
        "--set", f"data.manifest={manifest}", f"data.codec={codec}", f"data.cache_dir={root / 'cache'}",
        f"data.seq_len={SEQ}", "data.codebooks=null", "data.bpe_vocab_size=260", "train.progress=false",
        "train.tensorboard=false", "train.log_every=1", "train.ckpt_every=2", "optim.lr=1e-2", "optim.weight_decay=0",
        "schedule.warmup_steps=1",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def swept(speech, tmp_path_factory):
    out = tmp_path_factory.mktemp("isoflop") / "out"
    assert main(sweep_args(speech, out)) == 0
    return out


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_sweep_writes_the_table(swept):
    rows = read_csv(swept / "table.csv")
    assert list(rows[0]) == list(COLUMNS)
    got = {(float(r["budget"]), int(r["dim"])): r for r in rows}
    assert sorted(got) == sorted((b, d) for b in BUDGETS for d in (24, 32))  # d=40 is left out of both budgets
    for (budget, dim), r in got.items():
        assert int(r["vocab_size"]) == VOCAB and int(r["seq_len"]) == SEQ and int(r["batch_size"]) == BATCH
        assert int(r["D"]) == int(r["steps"]) * BATCH * SEQ
        assert int(r["flops"]) == int(r["steps"]) * per_step(dim) and abs(int(r["flops"]) / budget - 1) <= 0.01
        run = r["run_dir"]
        records = read_metrics(run, "eval")
        assert [x["step"] for x in records] == [int(r["steps"])]  # one eval, at the end
        assert float(r["loss"]) == pytest.approx(records[-1]["nll"], rel=1e-12)
        assert ckpt.latest_checkpoint(run).name == f"step-{int(r['steps']):08d}"
    assert {int(r["steps"]) for r in rows} == {2, 3, 4, 6}
    assert len(read_csv(swept / "plan.csv")) == 4


def test_rerun_skips_finished_and_resumes_unfinished(swept, speech, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(swept, out)
    before = {r["run_dir"].replace(str(swept), str(out)): float(r["loss"]) for r in read_csv(swept / "table.csv")}
    stamps = {run: os.stat(ckpt.latest_checkpoint(run) / "model.safetensors").st_mtime_ns for run in before}
    assert main(sweep_args(speech, out)) == 0
    assert "0 trained, 4 already done, 0 failed" in capsys.readouterr().out
    assert all(os.stat(ckpt.latest_checkpoint(r) / "model.safetensors").st_mtime_ns == t for r, t in stamps.items())

    # Kill a run after step 2 of 4: drop its last checkpoint; the rerun resumes it from step 2, to the same loss.
    run = next(r for r in before if f"C{BUDGETS[1]:.4g}-d32-" in r)
    shutil.rmtree(ckpt.latest_checkpoint(run))
    assert ckpt.latest_checkpoint(run).name == "step-00000002"
    assert main(sweep_args(speech, out)) == 0
    assert "1 trained, 3 already done, 0 failed" in capsys.readouterr().out
    after = {r["run_dir"]: float(r["loss"]) for r in read_csv(out / "table.csv")}
    assert after == pytest.approx(before, rel=1e-6)
    assert [x["step"] for x in read_metrics(run, "train")] == [1, 2, 3, 4]


def test_rerun_with_another_config_is_refused(swept, speech, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(swept, out)
    assert main([*sweep_args(speech, out), "optim.lr=5e-3"]) == 2
    assert "holds a run with another config (differs at optim.lr)" in capsys.readouterr().err


def test_plan_only_trains_nothing(speech, tmp_path, capsys):
    out = tmp_path / "plan"
    assert main(sweep_args(speech, out, "--plan-only")) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert text.count(f"C{BUDGETS[0]:.4g}-d") == 2 and text.count("left out: budget") == 2 and "d=40" in text


def test_plan_only_with_a_vocab_size_needs_no_corpus(tmp_path, capsys):
    args = ["scaling", "sweep", "--budgets", "1e12,3e12", "--dims", "64,128", "--plan-only", "--vocab-size", "500",
            "--head-ratio", "32", "--out", str(tmp_path / "x")]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    batch = lm_speech_tiny().train.batch_size  # no --batch-size: the preset's
    assert f"C1e+12-d64-L1-H2-B{batch}" in text and f"C3e+12-d128-L2-H4-B{batch}" in text
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budgets", "1e12,-3e12"], "budgets must be finite and > 0"),
        (["--budgets", "1e3"], "no valid model for budget(s) 1000"),
        (["--rule", "chinchilla"], "unknown family rule 'chinchilla'; valid: soda, marin"),
        (["--preset", "lm-speech-huge"], "unknown preset 'lm-speech-huge'"),
        (["--preset", "tagger-tiny"], "IsoFLOP sweeps train the 'lm' task; preset tagger-tiny is task 'tagger'"),
        (["--convention", "palm"], "unknown FLOP convention 'palm'"),
        (["--kv-group", "0"], "FamilyRule.kv_group must be >= 1"),
        (["--set", "model.nope=1"], "nope"),
    ],
)
def test_bad_input(extra, message, tmp_path, capsys):
    args = ["scaling", "sweep", "--budgets", "1e12", "--dims", "64", "--plan-only", "--vocab-size", "500",
            "--out", str(tmp_path), *extra]  # fmt: skip
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_vocab_size_is_for_planning_only(tmp_path, capsys):
    args = ["scaling", "sweep", "--budgets", "1e12", "--dims", "64", "--vocab-size", "500", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "--vocab-size is for --plan-only" in capsys.readouterr().err
