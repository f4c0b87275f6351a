"""Benchmark prompt files: AudioCaps, Song Describer and plain CSVs (written here), safe ids, per-row rejects and
whole-file errors."""

import csv
import logging

import pytest

from wavefoundry.data.prompt_files import (
    AUDIOCAPS_SECONDS,
    MAX_ID_CHARS,
    BenchmarkPrompt,
    PromptFileError,
    id_problem,
    read_prompt_file,
    read_prompt_table,
)


def _write(path, header, rows, *, bom=False):
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_audiocaps_csv_gives_ten_second_prompts_named_by_audiocap_id(tmp_path):
    path = _write(tmp_path / "test.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], [
        ["103549", "7fmOlUlwoNg", "20", "Constant rattling noise and sharp vibrations"],
        ["103548", "6BJ455B1aAs", "0", 'A man says "hello", then a dog barks,\nloudly'],  # quoted comma, newline
    ])  # fmt: skip
    table = read_prompt_table(path)
    assert table.format == "audiocaps" and table.rejects == []
    assert table.prompts == [
        BenchmarkPrompt(id="103549", caption="Constant rattling noise and sharp vibrations", seconds=10.0,
                        source_row=2),
        BenchmarkPrompt(id="103548", caption='A man says "hello", then a dog barks,\nloudly', seconds=10.0,
                        source_row=3),
    ]  # fmt: skip
    assert AUDIOCAPS_SECONDS == 10.0


def test_song_describer_csv_uses_caption_id_and_has_no_duration(tmp_path):
    header = ["caption_id", "track_id", "caption", "is_valid_subset", "familiarity", "artist_id", "album_id", "path",
              "duration"]  # fmt: skip
    path = _write(tmp_path / "song_describer.csv", header, [
        ["1", "1051198", "A retro-futurist drum machine groove", "True", "2", "485", "88", "98/1051198.2min.mp3",
         "222.6"],
        ["2", "1051198", "  ", "False", "0", "485", "88", "98/1051198.2min.mp3", "222.6"],
        ["3", "973498", "Mellow piano over soft strings", "True", "4", "12", "7", "98/973498.2min.mp3", "201.1"],
    ], bom=True)  # fmt: skip
    table = read_prompt_table(path)
    assert table.format == "song-describer"
    assert [(p.id, p.seconds, p.source_row) for p in table.prompts] == [("1", None, 2), ("3", None, 4)]
    assert table.rejects == [{"row": 3, "id": "2", "reason": "empty caption"}]


def test_plain_csv_with_optional_seconds(tmp_path):
    path = _write(tmp_path / "p.csv", ["id", "caption", "seconds"], [
        ["rain", "rain on a tin roof", "4.5"],
        ["siren", "a distant siren", ""],  # no duration
        ["bad-seconds", "x", "soon"],
        ["neg", "x", "-1"],
        ["nan", "x", "nan"],
        ["v1.2", "a dotted id", "2"],
    ])  # fmt: skip
    table = read_prompt_table(path)
    assert table.format == "plain"
    assert [(p.id, p.caption, p.seconds) for p in table.prompts] == [
        ("rain", "rain on a tin roof", 4.5),
        ("siren", "a distant siren", None),
        ("v1.2", "a dotted id", 2.0),
    ]
    assert [(r["row"], r["id"], r["reason"]) for r in table.rejects] == [
        (4, "bad-seconds", "seconds must be a number, got 'soon'"),
        (5, "neg", "seconds must be a finite number > 0, got '-1'"),
        (6, "nan", "seconds must be a finite number > 0, got 'nan'"),
    ]
    two_columns = _write(tmp_path / "q.csv", ["ID", " Caption "], [["a", "wind"]])  # header case and spaces
    assert read_prompt_file(two_columns) == [BenchmarkPrompt(id="a", caption="wind", seconds=None, source_row=2)]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("../etc/passwd", "unsafe id"),
        ("a/b", "unsafe id"),
        ("a\\b", "unsafe id"),
        (".hidden", "unsafe id"),
        ("trailing.", "unsafe id"),
        ("with space", "unsafe id"),
        ("", "empty id"),
        ("x" * (MAX_ID_CHARS + 1), f"at most {MAX_ID_CHARS}"),
        ("NUL", "reserved device name"),
        ("com1.take2", "reserved device name"),
    ],
)
def test_unsafe_ids_are_named(value, problem):
    assert problem in id_problem(value)


def test_safe_ids_pass():
    for value in ("103549", "7fmOlUlwoNg_20", "a-b", "v1.2", "x" * MAX_ID_CHARS, "console"):
        assert id_problem(value) is None


def test_bad_rows_are_rejected_with_row_numbers_and_reasons(tmp_path, caplog):
    path = _write(tmp_path / "p.csv", ["id", "caption"], [
        ["ok", "a dog barks"],
        ["../escape", "a cat"],
        ["", "no id"],
        ["short"],  # one field
        ["long", "x", "extra"],
        [],  # a blank line is skipped, not rejected
        ["ok2", "birdsong"],
    ])  # fmt: skip
    with caplog.at_level(logging.WARNING):
        prompts = read_prompt_file(path)
    assert [p.id for p in prompts] == ["ok", "ok2"] and prompts[1].source_row == 8
    table = read_prompt_table(path)
    assert [(r["row"], r["id"]) for r in table.rejects] == [(3, "../escape"), (4, ""), (5, "short"), (6, "long")]
    reasons = [r["reason"] for r in table.rejects]
    assert "unsafe id '../escape'" in reasons[0] and reasons[1] == "empty id"
    assert reasons[2] == "row has 1 fields, the header has 2" and reasons[3] == "row has 3 fields, the header has 2"
    assert "row 3 rejected: unsafe id" in caplog.text  # read_prompt_file logs every reject


def test_whole_file_errors(tmp_path):
    with pytest.raises(PromptFileError, match="no prompt file at"):
        read_prompt_table(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(PromptFileError, match="empty file"):
        read_prompt_table(tmp_path / "empty.csv")
    unknown = _write(tmp_path / "u.csv", ["file", "text"], [["a", "b"]])
    with pytest.raises(PromptFileError, match="unknown prompt file header file,text; supported formats: audiocaps: "
                       "audiocap_id,youtube_id,start_time,caption; song-describer: caption_id,track_id,caption,...; "
                       r"plain: id,caption\[,seconds\]"):  # fmt: skip
        read_prompt_table(unknown)
    extra = _write(tmp_path / "e.csv", ["id", "caption", "mood"], [["a", "b", "c"]])  # plain takes no other columns
    with pytest.raises(PromptFileError, match="unknown prompt file header"):
        read_prompt_table(extra)
    dup = _write(tmp_path / "d.csv", ["id", "caption"], [["a", "x"], ["b", "y"], ["a", "z"]])
    with pytest.raises(PromptFileError, match="duplicate id 'a' in rows 2 and 4"):
        read_prompt_table(dup)
    header_only = _write(tmp_path / "h.csv", ["id", "caption"], [])
    with pytest.raises(PromptFileError, match=r"no valid prompts \(0 rows rejected\)"):
        read_prompt_table(header_only)
    all_bad = _write(tmp_path / "b.csv", ["id", "caption"], [["a", ""], ["b", " "]])
    with pytest.raises(PromptFileError, match="2 rows rejected; first reject: row 2: empty caption"):
        read_prompt_table(all_bad)
    repeated = _write(tmp_path / "r.csv", ["id", "caption", "caption"], [["a", "b", "c"]])
    with pytest.raises(PromptFileError, match="repeated column names"):
        read_prompt_table(repeated)
