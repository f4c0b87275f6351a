"""The tiny DiT config shared by the DiT and DiT-format tests.

kv heads = 32 // 16 = 2 for 4 query heads: grouped cross-attention as in Stable Audio Open (12 for 24).
"""

from wavefoundry.diffusion.dit import DiTConfig

TINY_DIT = DiTConfig(
    io_channels=8,
    embed_dim=64,
    depth=2,
    num_heads=4,
    cond_token_dim=32,
    global_cond_dim=24,
    timestep_features_dim=16,
    rotary_dim=8,
)
