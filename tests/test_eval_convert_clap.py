"""``wavefoundry eval convert-clap`` end to end: a tiny ClapModel written under laion_clap's original names, converted
by the command, loaded by ``eval clap --model laion-clap``: the embeddings and scores are the original model's."""

import json

import numpy as np
import pytest
import torch

from wavefoundry.audio.io import save_audio
from wavefoundry.cli import main
from wavefoundry.eval.laion_clap import LaionClap, load_laion_clap

transformers = pytest.importorskip("transformers")
from tests.laion_clap_fixtures import (  # noqa: E402  (needs transformers)
    make_tokenizer,
    randomise_norms,
    save_training_checkpoint,
    tiny_config,
    to_original,
)

SR = 48000


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """(model, tokenizer, its laion_clap checkpoint, its config.json, the tokenizer folder)."""
    root = tmp_path_factory.mktemp("orig")
    cfg = tiny_config(False)
    torch.manual_seed(5)
    model = transformers.ClapModel(cfg).eval()
    randomise_norms(model, 6)
    cfg.save_pretrained(root / "cfg")
    tokenizer = make_tokenizer(root / "tok")
    pt = save_training_checkpoint(root / "ckpt.pt", to_original(model.state_dict(), cfg))
    return model, tokenizer, pt, root / "cfg" / "config.json", root / "tok"


def run(*argv):
    return main([str(a) for a in argv])


def test_converted_folder_embeds_like_the_original(original, tmp_path, capsys):
    model, tokenizer, pt, cfg_json, tok_dir = original
    out = tmp_path / "clap"
    assert run("eval", "convert-clap", pt, "--config", cfg_json, "--tokenizer", tok_dir, "--out", out) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and f"--weights {out}" in printed
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()
    }
    converted = load_laion_clap(out)
    reference = LaionClap(model, tokenizer, weights_sha256="-")
    assert converted.frontend.config == reference.frontend.config  # laion_clap's front end (50 Hz, not HF's 0)
    rs = np.random.RandomState(1)
    windows = (rs.randn(2, 1, 10 * SR) * 0.2).astype(np.float32)
    np.testing.assert_array_equal(converted.embed_audio(windows), reference.embed_audio(windows))
    texts = ["a dog barks", "soft rain on the roof"]
    np.testing.assert_array_equal(converted.embed_text(texts), reference.embed_text(texts))

    gen = tmp_path / "gen"
    for i, w in enumerate(windows):
        save_audio(gen / f"c{i}.wav", w, SR, subtype="FLOAT")
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("id,caption\nc0,a dog barks\nc1,soft rain on the roof\n")
    result = tmp_path / "clap.json"
    assert run("eval", "clap", gen, "--prompts", prompts, "--model", "laion-clap", "--weights", out,
               "--out", result, "--no-progress") == 0  # fmt: skip
    score = json.loads(result.read_text())
    expected = (reference.embed_audio(windows) * reference.embed_text(texts)).sum(-1)
    got = [score["per_item"][f"c{i}"]["cosine"] for i in range(2)]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert score["model"]["name"] == "laion-clap-rand_trunc-int16"


def test_without_tokenizer_and_errors(original, tmp_path, capsys):
    _, _, pt, cfg_json, tok_dir = original
    out = tmp_path / "bare"
    assert run("eval", "convert-clap", pt, "--config", cfg_json, "--out", out) == 0
    assert "no --tokenizer: copy a roberta-base tokenizer" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_laion_clap(out)
    assert load_laion_clap(out, tokenizer_path=tok_dir).embed_text(["a dog"]).shape == (1, 16)

    def error(*argv):
        capsys.readouterr()  # drop earlier output (transformers' loading bars)
        assert run("eval", "convert-clap", *argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err  # one line, no traceback
        return err

    assert "is not an empty folder" in error(pt, "--config", cfg_json, "--out", out)
    assert "checkpoint not found" in error(tmp_path / "none.pt", "--config", cfg_json, "--out", tmp_path / "o")
    wrong = error(pt, "--preset", "HTSAT-tiny", "--out", tmp_path / "o")  # real HTSAT-tiny shapes: not this file
    assert "wrong shapes" in wrong and "wrong preset?" in wrong
    (tmp_path / "t5.json").write_text('{"model_type": "t5"}')
    assert "not a CLAP config" in error(pt, "--config", tmp_path / "t5.json", "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):  # argparse: an unknown preset, and --preset with --config
        run("eval", "convert-clap", pt, "--preset", "HTSAT-huge", "--out", tmp_path / "o")
    with pytest.raises(SystemExit):
        run("eval", "convert-clap", pt, "--preset", "HTSAT-tiny", "--config", cfg_json, "--out", tmp_path / "o")
    assert "invalid choice" in capsys.readouterr().err
