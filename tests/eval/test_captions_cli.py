"""``wavefoundry data avcaps`` + ``wavefoundry eval captions`` end to end on a tiny set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wavefoundry.cli import main
from wavefoundry.data.manifest import read_manifest
from wavefoundry.eval.captions import caption_metrics
from wavefoundry.eval.classification import mean_average_precision, uar, war


@pytest.fixture(scope="module")
def avcaps(tmp_path_factory):
    out = tmp_path_factory.mktemp("avcaps")
    args = ["data", "avcaps", "--n", "8", "--seconds", "0.5", "--sample-rate", "8000", "--image-size", "32"]
    args += ["--workers", "1", "--no-progress", "--test-fraction", "0", "--valid-fraction", "0", "--out", str(out)]
    assert main(args) == 0
    return out / "manifest.jsonl"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_captions_from_manifest(avcaps, tmp_path):
    items = read_manifest(avcaps)
    preds = []
    for k, it in enumerate(items[:-1]):  # the last item has no prediction
        caption = it.captions[1] if k % 2 else "a red circle"
        label = it.attrs["label"] if k % 3 else "sine"
        scores = {lbl: 1.0 for lbl in it.attrs["labels"][:3]} | {"masked": 0.5}
        preds.append({"id": it.id, "caption": caption, "label": label, "scores": scores})
    preds.append({"id": "not-in-refs", "caption": "x"})
    out = tmp_path / "metrics.json"
    assert main(["eval", "captions", str(_write(tmp_path / "p.jsonl", preds)), str(avcaps), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["missing"] == {
        "no_prediction": [items[-1].id],
        "no_reference": ["not-in-refs"],
        "empty_references": [],
    }
    paired = {p["id"]: p for p in preds[:-1]}
    expected = caption_metrics({i: p["caption"] for i, p in paired.items()},
                               {it.id: it.captions for it in items[:-1]})  # fmt: skip
    assert report["captions"]["cider_d"] == pytest.approx(expected["corpus"]["cider_d"])
    assert report["captions"]["n"] == 7 and report["per_id"][items[1].id]["bleu_4"] > 0
    t = [it.attrs["label"] for it in items[:-1]]
    p = [paired[it.id]["label"] for it in items[:-1]]
    assert report["classification"]["war"] == pytest.approx(war(t, p))
    assert report["classification"]["uar"] == pytest.approx(uar(t, p))
    classes = sorted({c for it in items[:-1] for c in it.attrs["labels"]} | {"masked"})
    y = np.array([[c in it.attrs["labels"] for c in classes] for it in items[:-1]], float)
    s = np.array([[paired[it.id]["scores"].get(c, -1.0) for c in classes] for it in items[:-1]])
    assert report["multilabel"]["map"] == pytest.approx(mean_average_precision(y, s)[0])


def test_eval_captions_references_jsonl_and_bad_input(tmp_path):
    refs = _write(tmp_path / "r.jsonl", [{"id": "a", "captions": ["a dog barks twice"]}, {"id": "b", "captions": []}])
    preds = _write(tmp_path / "p.jsonl", [{"id": "a", "caption": "A dog barks, twice!"}, {"id": "b", "caption": "x"}])
    out = tmp_path / "m.json"
    assert main(["eval", "captions", str(preds), str(refs), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["captions"]["n"] == 1 and report["missing"]["empty_references"] == ["b"]
    assert report["captions"]["bleu_4"] == pytest.approx(1.0) and report["captions"]["rouge_l"] == 1.0
    dup = _write(tmp_path / "d.jsonl", [{"id": "a", "caption": "x"}, {"id": "a", "caption": "y"}])
    assert main(["eval", "captions", str(dup), str(refs)]) == 2  # one-line error, exit 2
    none = _write(tmp_path / "n.jsonl", [{"id": "zzz", "caption": "x"}])
    assert main(["eval", "captions", str(none), str(refs)]) == 2
