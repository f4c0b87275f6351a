"""Strict checks shared by the checkpoint converters: a checkpoint loads whole or not at all."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

_SHOW = 5  # offending keys listed in an error


class FormatError(ValueError):
    """An outside checkpoint we cannot read faithfully: an unsupported config field or weights that do not fit."""


class CheckpointMismatchError(FormatError):
    """A checkpoint does not fit the architecture: missing or unexpected keys, or wrong shapes."""


def _head(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(sorted(keys)[:_SHOW]) + more


def check_state(state: Mapping[str, Tensor], expected: Mapping[str, torch.Size], what: str, hint: str = "") -> None:
    """Raise unless ``state`` has exactly the keys and shapes of ``expected``.

    Args:
        state: name -> tensor.
        expected: name -> shape.
        what: what ``state`` is, for the message.
        hint: appended to the message (a likely cause).

    Raises:
        CheckpointMismatchError: naming the first few missing keys, unexpected keys and wrong shapes.
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(s)}" for k, s in expected.items() if k in state and state[k].shape != s
    ]
    problems = [
        f"{label}: {_head(keys)}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        if keys
    ]
    if problems:
        raise CheckpointMismatchError(f"{what}: " + "; ".join(problems) + hint)
