import json
from dataclasses import dataclass, field
from typing import Literal

import pytest

from wavefoundry.config import ConfigError, apply_overrides, from_dict, load_json, save_json, to_dict


@dataclass(kw_only=True)
class Inner:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    name: Literal["adamw", "sgd"] = "adamw"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError("lr must be positive")


@dataclass(kw_only=True)
class Outer:
    steps: int = 10
    flag: bool = False
    tags: list[str] = field(default_factory=list)
    maybe: int | None = None
    optim: Inner = field(default_factory=Inner)
    extra: Inner | None = None


def test_round_trip_through_json(tmp_path):
    cfg = Outer(steps=3, flag=True, tags=["a", "b"], maybe=4, optim=Inner(lr=0.1, name="sgd"))
    save_json(cfg, tmp_path / "c.json")
    assert load_json(Outer, tmp_path / "c.json") == cfg
    assert json.loads((tmp_path / "c.json").read_text())["optim"]["betas"] == [0.9, 0.95]


def test_unknown_key_names_key_and_valid_ones():
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"optim": {"lrr": 1}})
    msg = str(err.value)
    assert "'lrr'" in msg and "section 'optim'" in msg and "betas, lr, name" in msg


@pytest.mark.parametrize(
    ("override", "path", "expected"),
    [
        ("steps=20", ("steps",), 20),
        ("steps=1e3", ("steps",), 1000),
        ("flag=yes", ("flag",), True),
        ("flag=0", ("flag",), False),
        ("optim.lr=3e-4", ("optim", "lr"), 3e-4),
        ("optim.betas=0.8,0.99", ("optim", "betas"), (0.8, 0.99)),
        ("optim.betas=[0.5, 0.6]", ("optim", "betas"), (0.5, 0.6)),
        ("optim.name=sgd", ("optim", "name"), "sgd"),
        ("tags=x,y", ("tags",), ["x", "y"]),
        ("maybe=none", ("maybe",), None),
        ("maybe=7", ("maybe",), 7),
        ("extra.lr=0.5", ("extra", "lr"), 0.5),
    ],
)
def test_overrides_cast_by_field_type(override, path, expected):
    cfg = apply_overrides(Outer(), [override])
    value = cfg
    for part in path:
        value = getattr(value, part)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("stepz=3", r"unknown config key 'stepz'; valid keys: extra, flag, maybe, optim, steps, tags"),
        ("optim.lrr=3", r"'lrr' in section 'optim'"),
        ("steps=abc", r"steps: expected an integer"),
        ("steps=1.5", r"steps: expected an integer"),
        ("flag=maybe", r"flag: expected true/false"),
        ("optim.name=adam", r"not one of 'adamw', 'sgd'"),
        ("optim.betas=1,2,3", r"expected 2 items"),
        ("optim=3", r"'optim' is a section"),
        ("steps.x=3", r"'steps' is a value"),
        ("optim.lr=-1", r"lr must be positive"),
        ("noequals", r"bad override"),
        ("steps=none", r"steps: expected an integer, got .none."),
    ],
)
def test_bad_overrides_fail_clearly(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(Outer(), [override])


def test_overrides_do_not_mutate_input():
    cfg = Outer()
    apply_overrides(cfg, ["optim.lr=0.5"])
    assert cfg.optim.lr == 1e-3


def test_load_json_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_json(Outer, tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_json(Outer, tmp_path / "bad.json")
    assert to_dict(from_dict(Outer, {})) == to_dict(Outer())


def test_presets_build_and_round_trip(tmp_path):
    from wavefoundry.presets import PRESETS, get_preset
    from wavefoundry.train.tasks import load_run_config

    for name in PRESETS:
        cfg = get_preset(name)
        save_json(cfg, tmp_path / f"{name}.json")
        assert load_run_config(tmp_path / f"{name}.json") == cfg
    valid = "valid presets: clap-synthcaps, codec-stereo, codec-tiny, codec-tiny-rvq, lm-speech-tiny, masked-mega, "
    with pytest.raises(ConfigError, match=valid):
        get_preset("nope")


@dataclass(kw_only=True)
class Required:
    x: int


@dataclass(kw_only=True)
class HasOptional:
    req: Required | None = None


def test_sections_with_required_keys_are_set_as_json():
    with pytest.raises(ConfigError, match="has required keys"):
        apply_overrides(HasOptional(), ["req.x=3"])
    assert apply_overrides(HasOptional(), ['req={"x": 3}']).req == Required(x=3)
    assert apply_overrides(Outer(), ['optim={"lr": 0.5}']).optim == Inner(lr=0.5)
    with pytest.raises(ConfigError, match="unknown config key 'y'"):
        apply_overrides(HasOptional(), ['req={"x": 3, "y": 1}'])
