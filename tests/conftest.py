"""Test-wide settings: every test starts from the same torch and numpy RNG state, so results do not depend on
which tests ran before it (or on which xdist worker)."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_rngs():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
