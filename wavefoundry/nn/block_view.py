"""A flat view over the blocks of several registered ``nn.ModuleList``s, for models built from sub-models.

``train/dist.py`` walks ``model.blocks``: FSDP2 shards each entry, activation checkpointing replaces each entry
(``blocks[i] = checkpoint_wrapper(blocks[i])``). A model whose blocks live in several sub-models exposes them as a
:class:`BlockView`: iterating gives every block in order, and assigning an entry writes through to the list that
owns it, so the replacement reaches the model. The view itself is not registered (no duplicate state-dict keys).
"""

from __future__ import annotations

from torch import nn


class BlockView(nn.ModuleList):
    """The blocks of ``lists`` in order; ``view[i] = m`` also sets the owning list's entry.

    Args:
        lists: the registered ModuleLists that own the blocks.
    """

    def __init__(self, lists: list[nn.ModuleList]) -> None:
        super().__init__(block for blocks in lists for block in blocks)
        self._owners = [(blocks, j) for blocks in lists for j in range(len(blocks))]

    def __setitem__(self, idx: int, module: nn.Module) -> None:
        owner, j = self._owners[idx]
        owner[j] = module
        super().__setitem__(idx, module)
