"""``wavefoundry scaling flops``: the three conventions per token and for a token count, table and JSON."""

import json

import pytest

from wavefoundry.cli import main
from wavefoundry.lm.decoder import DecoderConfig, decoder_preset, param_count
from wavefoundry.scaling.flops import all_conventions, forward_flops_breakdown


def test_preset_json_matches_the_library(capsys):
    assert main(["scaling", "flops", "--preset", "soda-135m", "--seq-len", "4096", "--tokens", "5e11", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cfg = decoder_preset("soda_135m")
    assert out["flops_per_token"] == all_conventions(cfg, 4096)
    assert out["N"] == param_count(cfg) and out["N_nonemb"] == param_count(cfg, embeddings=False)
    assert out["flops"] == {k: v * 500_000_000_000 for k, v in all_conventions(cfg, 4096).items()}
    assert out["forward_breakdown"] == forward_flops_breakdown(cfg, 4096)


def test_explicit_shape_table(capsys):
    args = ["--dim", "64", "--n-layers", "2", "--n-heads", "2", "--ffn-dim", "128", "--vocab-size", "500"]
    assert main(["scaling", "flops", *args, "--seq-len", "256", "--tokens", "1000"]) == 0
    out = capsys.readouterr().out
    cfg = DecoderConfig(vocab_size=500, dim=64, n_layers=2, n_heads=2, n_kv_heads=2, ffn_dim=128, max_seq_len=8192)
    per_token = all_conventions(cfg, 256)
    assert f"N = {param_count(cfg):,} parameters" in out and "2/2 heads of 32" in out
    for name, value in per_token.items():
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert line.split()[1:3] == [f"{value:.4g}", f"{value * 1000:.4g}"]
    assert f"{forward_flops_breakdown(cfg, 256)['total']:,}" in out


def test_preset_fields_can_be_overridden(capsys):
    assert main(["scaling", "flops", "--preset", "lm_micro", "--vocab-size", "1000", "--seq-len", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["vocab_size"] == 1000 and out["model"]["dim"] == 32


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dim", "64", "--seq-len", "8"], "missing --n-layers, --n-heads, --ffn-dim, --vocab-size"),
        (["--preset", "soda_9b", "--seq-len", "8"], "unknown decoder preset 'soda_9b'"),
        (["--preset", "lm_micro", "--seq-len", "0"], "seq_len must be an integer >= 1"),
        (["--preset", "lm_micro", "--n-heads", "3", "--seq-len", "8"], "n_kv_heads=2 must divide n_heads=3"),
    ],
)
def test_bad_input(args, message, capsys):
    assert main(["scaling", "flops", *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_token_count():
    with pytest.raises(SystemExit):
        main(["scaling", "flops", "--preset", "lm_micro", "--seq-len", "8", "--tokens", "-5"])
