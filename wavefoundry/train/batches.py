"""Step-indexed batches: the samples of step ``s`` are a pure function of (seed, s), so resume is exact.

The sample stream is the concatenation of seeded permutations of the dataset (one per epoch). Step ``s`` takes
positions ``[s*G, (s+1)*G)`` of that stream (``G`` the global batch); rank ``r`` of ``W`` takes micro-batch ``a`` of
``A`` as the contiguous slice ``(a*W + r)*m ... + m`` with ``m = G / (W*A)``. Each sample travels as a key
``(index, sample_seed)``; datasets draw crops and other randomness from ``sample_seed`` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np
from torch.utils.data import Sampler

SampleKey = tuple[int, int]


class StepBatchSampler(Sampler[list[SampleKey]]):
    """Yields this rank's micro-batches of keys for steps ``start_step .. total_steps-1`` in order."""

    def __init__(
        self,
        n_items: int,
        *,
        global_batch: int,
        seed: int,
        start_step: int,
        total_steps: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
    ) -> None:
        if n_items < 1:
            raise ValueError("the training set is empty")
        if global_batch % (world_size * grad_accum):
            raise ValueError(
                f"train.batch_size ({global_batch}) must be divisible by world size ({world_size}) x "
                f"train.grad_accum ({grad_accum})"
            )
        self.n_items, self.global_batch, self.seed = n_items, global_batch, seed
        self.start_step, self.total_steps = start_step, total_steps
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.micro = global_batch // (world_size * grad_accum)

    @lru_cache(maxsize=4)  # noqa: B019 - a handful of epochs per sampler, freed with it
    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_items)

    def keys(self, step: int, micro: int) -> list[SampleKey]:
        """Keys of micro-batch ``micro`` of step ``step`` on this rank."""
        first = step * self.global_batch + (micro * self.world_size + self.rank) * self.micro
        out = []
        for pos in range(first, first + self.micro):
            epoch, offset = divmod(pos, self.n_items)
            out.append((int(self._permutation(epoch)[offset]), self.seed * 1_000_000_007 + pos))
        return out

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for step in range(self.start_step, self.total_steps):
            for micro in range(self.grad_accum):
                yield self.keys(step, micro)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.grad_accum


def eval_keys(n_items: int, batch: int, seed: int, rank: int, world_size: int) -> list[list[SampleKey]]:
    """Fixed evaluation batches in dataset order; rank ``r`` takes batches ``r, r+W, ...``."""
    batches = [
        [(i, seed * 1_000_000_007 + i) for i in range(start, min(start + batch, n_items))]
        for start in range(0, n_items, batch)
    ]
    return batches[rank::world_size]
