"""The evaluation report page: metric table, clips with players and spectrograms, neighbour list, histograms."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from wavefoundry.audio.io import save_audio
from wavefoundry.eval.eval_report import ReportClip, load_result, metric_rows, write_evaluation_report
from wavefoundry.eval.figures import histogram_figure, spectrogram_figure


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.src = []

    def handle_starttag(self, tag, attrs):
        self.src += [v for k, v in attrs if k == "src"]


def tone(f=440.0, sr=16000, seconds=1.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * f * t))[None].astype(np.float32)


def test_spectrogram_figure_is_a_png(tmp_path):
    path = spectrogram_figure(tone(), 16000, tmp_path / "s.png", title="a <tone>")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300
    with pytest.raises(Exception, match=r"empty|finite|NaN"):
        spectrogram_figure(np.full((1, 100), np.nan, np.float32), 16000, tmp_path / "bad.png")


def test_histogram_needs_finite_values(tmp_path):
    histogram_figure([0.1, 0.2, float("nan")], tmp_path / "h.png", xlabel="d", marks={"t": 0.15})
    assert (tmp_path / "h.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no finite"):
        histogram_figure([float("nan")], tmp_path / "h2.png", xlabel="d")


def test_load_result_rejects_other_json(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"foo": 1}))
    with pytest.raises(ValueError, match="missing metric, summary"):
        load_result(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable JSON"):
        load_result(tmp_path / "y.json")


def test_metric_rows_flatten_nested_summaries():
    rows = metric_rows({"fd": {"metric": "fd", "summary": {"fd": 1.5, "terms": {"mean": 1.0, "trace": 0.5}, "l": [1]}}})
    assert rows == {"fd": {"fd": 1.5, "terms.mean": 1.0, "terms.trace": 0.5}}


def test_report_page_links_every_file(tmp_path):
    gen, train = tmp_path / "gen", tmp_path / "train"
    for folder, f in ((gen, 440.0), (train, 660.0)):
        for i in range(2):
            save_audio(folder / f"c{i}.wav", tone(f * (i + 1)), 16000)
    results = {
        "fd": {"metric": "fd", "summary": {"fd": 12.5}},
        "clap": {"metric": "clap", "summary": {"score": 0.3},
                 "per_item": {"c0": {"cosine": 0.2}, "c1": {"cosine": 0.4}}},
        "memorization": {"metric": "memorization", "summary": {"n_near": 1}, "threshold": 0.1,
                         "distances": [0.05, 0.3],
                         "closest": [{"id": "c0", "path": str(gen / "c0.wav"), "flag": "near",
                                      "neighbours": [{"id": "t0", "path": str(train / "c0.wav"), "distance": 0.05}]}]},
    }  # fmt: skip
    clips = [ReportClip(id="c0", path=gen / "c0.wav", prompt="a <b>tone</b>", scores={"clap": 0.2}),
             ReportClip(id="c1", path=gen / "c1.wav", prompt=None)]  # fmt: skip
    out = tmp_path / "report"
    index = write_evaluation_report(out, title="eval", results=results, clips=clips, settings={"generated": "gen"})
    page = index.read_text()
    assert "a &lt;b&gt;tone&lt;/b&gt;" in page and "<b>tone" not in page  # prompts are escaped
    assert "12.5" in page and "near" in page and "t0 (0.05)" in page
    parser = Links()
    parser.feed(page)
    assert len(parser.src) == 2 + 2 + 2 + 2  # 2 clips (audio + spectrogram), 2 histograms, 2 neighbour players
    for src in parser.src:
        assert (out / src).is_file(), src
    # writing again replaces the old files instead of leaving stale ones
    write_evaluation_report(out, title="eval", results={"fd": results["fd"]})
    assert not (out / "audio").exists() and not list((out / "img").iterdir())
