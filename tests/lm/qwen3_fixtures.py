"""Tiny decoder configs and transformers' Qwen3ForCausalLM twins with the same random weights, for parity tests.

GQA is 4 query heads over 2 kv heads; ``WIDE_HEADS`` has ``n_heads * head_dim != dim`` (as Qwen3 from 0.6B up).
"""

import dataclasses

import torch

from wavefoundry.formats.qwen3 import decoder_config_to_hf, state_from_hf
from wavefoundry.lm.decoder import Decoder, DecoderConfig, lm_micro

MICRO = lm_micro()
WIDE_HEADS = dataclasses.replace(MICRO, head_dim=16, rope_base=10_000.0, norm_eps=1e-5)
TIED = dataclasses.replace(MICRO, tie_embeddings=True)


def hf_config(cfg: DecoderConfig):
    """transformers' Qwen3Config for ``cfg`` (through our exporter's field map)."""
    from transformers import Qwen3Config

    fields = decoder_config_to_hf(cfg)
    return Qwen3Config(**{k: v for k, v in fields.items() if k not in ("architectures", "model_type", "torch_dtype")})


def hf_pair(cfg: DecoderConfig = MICRO, seed: int = 0, std: float = 0.3):
    """(Qwen3ForCausalLM, our Decoder), both in eval mode, with the same random weights.

    Weights are N(0, std^2) and norms 1 + N(0, 0.1^2), larger than the init so that every part of the network
    (q/k norms included) moves the logits.
    """
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    ref = Qwen3ForCausalLM(hf_config(cfg)).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(1 + 0.1 * torch.randn(p.shape) if name.endswith("norm.weight") else std * torch.randn(p.shape))
    ours = Decoder(cfg).eval()
    ours.load_state_dict(state_from_hf(ref.state_dict(), cfg))
    return ref, ours
