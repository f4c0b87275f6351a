"""SynthCaps: a procedural, seedable dataset of captioned audio made with numpy (see docs/synthcaps.md).

Item ``i`` of seed ``s`` depends only on ``(s, i)``; every item carries its ground truth in ``attrs``.
"""

from wavefoundry.data.synth.build import (
    CATEGORIES,
    COMMON_KEYS,
    CREATOR,
    LICENSE,
    LICENSE_URL,
    SOURCE,
    SynthConfig,
    SynthItem,
    assign_split,
    generate_synthcaps,
    item_id,
    spatialize,
    synth_item,
    write_item,
)

__all__ = [
    "CATEGORIES",
    "COMMON_KEYS",
    "CREATOR",
    "LICENSE",
    "LICENSE_URL",
    "SOURCE",
    "SynthConfig",
    "SynthItem",
    "assign_split",
    "generate_synthcaps",
    "item_id",
    "spatialize",
    "synth_item",
    "write_item",
]
