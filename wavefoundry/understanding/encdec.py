"""Audio+vision -> text encoder-decoder: Conformer audio encoder, Swin vision encoder (images or video frames),
cross-attention fusion, causal text decoder; contrastive projections and classification heads.

::

    audio (B, S) 16 kHz --Conformer--> (B, La, Da) --+
                                                      +--fusion (co-attention)--> memory (B, La + Lv, D)
    images (B, 3, S, S) / frames (B, F, 3, S, S)      |                               |
        --Swin (per frame, temporal pooling)--> (B, Lv, Dv)          text decoder (cross-attention in every block)

Either modality may be None (inference with audio only or image only); in training, modality dropout removes one
of the two per row with probability ``modality_dropout`` (:meth:`AVTextModel.encode`). The contrastive
embeddings are the unimodal projected tokens, mean pooled (before fusion, so they never see the other modality);
the classification heads read the mean of the fused memory. Objectives live in :mod:`.objectives`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.nn.block_view import BlockView
from wavefoundry.understanding.conformer import ConformerConfig, ConformerEncoder, conformer_l, conformer_tiny
from wavefoundry.understanding.fusion import CrossModalFusion, FusionConfig, Stream
from wavefoundry.understanding.swin import SwinConfig, SwinEncoder, VideoConfig, VideoEncoder, swin_t, swin_tiny
from wavefoundry.understanding.text_decoder import TextDecoder, TextDecoderConfig


@dataclass(kw_only=True)
class AVTextConfig:
    """The whole model; see :func:`av_described` and :func:`av_tiny`."""

    audio: ConformerConfig = field(default_factory=ConformerConfig)
    vision: SwinConfig = field(default_factory=SwinConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    decoder: TextDecoderConfig = field(default_factory=TextDecoderConfig)
    contrastive_dim: int = 256
    init_temperature: float = 0.07
    num_classes: int = 0  # single-label head (softmax, CE); 0 = none
    num_labels: int = 0  # multi-label head (sigmoid, BCE); 0 = none
    modality_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.decoder.memory_dim != self.fusion.dim:
            raise ValueError(
                f"decoder.memory_dim ({self.decoder.memory_dim}) must equal fusion.dim ({self.fusion.dim})"
            )
        if self.contrastive_dim < 1 or self.num_classes < 0 or self.num_labels < 0:
            raise ValueError("contrastive_dim must be >= 1 and num_classes, num_labels >= 0")
        if not 0.0 <= self.modality_dropout <= 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1], got {self.modality_dropout}")
        if not 0.0 < self.init_temperature <= 1.0:
            raise ValueError(f"init_temperature must be in (0, 1], got {self.init_temperature}")


@dataclass
class Encoded:
    """What :meth:`AVTextModel.encode` gives: the fused memory and the projected unimodal streams."""

    memory: Tensor  # (B, Lm, D)
    memory_mask: Tensor  # (B, Lm) bool
    audio: Stream | None  # projected, before fusion
    visual: Stream | None


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B, L, D) over the True positions of (B, L) -> (B, D) (rows without one give zeros)."""
    w = mask.to(tokens.dtype).unsqueeze(-1)  # (B, L, 1)
    return (tokens * w).sum(1) / w.sum(1).clamp(min=1.0)


class AVTextModel(nn.Module):
    """The encoder-decoder; ``blocks`` lists every transformer block (for checkpointing and FSDP wrapping).

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: AVTextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio_encoder = ConformerEncoder(cfg.audio)
        self.video_encoder = VideoEncoder(SwinEncoder(cfg.vision), cfg.video)
        self.fusion = CrossModalFusion(
            cfg.fusion,
            audio_dim=cfg.audio.dim,
            visual_dim=cfg.vision.out_dim,
            visual_tokens=cfg.vision.num_tokens,
        )
        self.decoder = TextDecoder(cfg.decoder)
        self.audio_embed = nn.Linear(cfg.fusion.dim, cfg.contrastive_dim)
        self.visual_embed = nn.Linear(cfg.fusion.dim, cfg.contrastive_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        self.class_head = nn.Linear(cfg.fusion.dim, cfg.num_classes) if cfg.num_classes else None
        self.label_head = nn.Linear(cfg.fusion.dim, cfg.num_labels) if cfg.num_labels else None

    def block_lists(self) -> list[nn.ModuleList]:
        """The registered ModuleLists of transformer blocks: Conformer, each Swin stage, fusion, decoder.

        :attr:`blocks` is the flat view over them.
        """
        swin = [stage.blocks for stage in self.video_encoder.swin.stages]
        return [self.audio_encoder.blocks, *swin, self.fusion.blocks, self.decoder.blocks]

    @property
    def blocks(self) -> BlockView:
        """Every transformer block in order (Conformer, Swin, fusion, decoder); assigning an entry (activation
        checkpointing's wrapper) writes through to the sub-model that owns it."""
        return BlockView(self.block_lists())

    def _drop_masks(self, batch: int, device, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Per-row presence of (audio, visual) under modality dropout: a dropped row loses one of the two."""
        B = batch
        keep = torch.ones(2, B, dtype=torch.bool, device=device)
        if not self.training or self.cfg.modality_dropout == 0.0:
            return keep[0], keep[1]
        drop = torch.rand(B, generator=generator).to(device) < self.cfg.modality_dropout
        which = torch.randint(0, 2, (B,), generator=generator).to(device)  # 0: drop audio, 1: drop visual
        keep[0] &= ~(drop & (which == 0))
        keep[1] &= ~(drop & (which == 1))
        return keep[0], keep[1]

    def encode(
        self,
        *,
        audio: Tensor | None = None,
        audio_lengths: Tensor | None = None,
        images: Tensor | None = None,
        frames: Tensor | None = None,
        frame_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Encoded:
        """Encode and fuse whatever is given.

        Args:
            audio: (B, S) mono at ``cfg.audio.sample_rate``, with ``audio_lengths`` (B,) samples when padded.
            images: (B, 3, S, S) at ``cfg.vision.image_size`` (see :func:`~.swin.prepare_images`), or
            frames: (B, F, 3, S, S) video frames with ``frame_mask`` (B, F); not both.
            generator: random source of modality dropout (training mode only).

        Raises:
            ValueError: neither modality, both images and frames, or mismatched batch sizes.
        """
        if images is not None and frames is not None:
            raise ValueError("give images or video frames, not both")
        frames = images.unsqueeze(1) if images is not None else frames  # a still image is a one-frame video
        if audio is None and frames is None:
            raise ValueError("give audio, an image/video or both: the model got neither modality")
        B = (audio if audio is not None else frames).shape[0]
        if audio is not None and frames is not None and frames.shape[0] != B:
            raise ValueError(f"audio has {B} rows but the images/frames have {frames.shape[0]}")
        device = (audio if audio is not None else frames).device
        keep_a, keep_v = self._drop_masks(B, device, generator)
        a = v = None
        if audio is not None:
            tokens, mask = self.audio_encoder(audio, audio_lengths)
            a = Stream(tokens, mask, keep_a if frames is not None else torch.ones_like(keep_a))
        if frames is not None:
            tokens = self.video_encoder(frames, frame_mask)  # (B, Lv, Dv)
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=device)
            v = Stream(tokens, mask, keep_v if audio is not None else torch.ones_like(keep_v))
        a, v = self.fusion.project(a, v)
        memory, memory_mask = self.fusion(a, v)
        return Encoded(memory, memory_mask, a, v)

    def caption_logits(self, ids: Tensor, enc: Encoded) -> Tensor:
        """Next-token logits (B, L, V) of caption ids (B, L) (starting with ``[BOS]``)."""
        return self.decoder(ids, enc.memory, enc.memory_mask)

    def mlm_logits(self, ids: Tensor, enc: Encoded, key_mask: Tensor | None = None) -> Tensor:
        """Own-token logits (B, L, V) of masked ids (B, L) (starting with ``[ENC]``), bidirectional mode."""
        return self.decoder(ids, enc.memory, enc.memory_mask, causal=False, key_mask=key_mask)

    def embeddings(self, enc: Encoded) -> tuple[Tensor, Tensor]:
        """L2-normalised pooled (audio (B, E), visual (B, E)) embeddings; needs both modalities."""
        if enc.audio is None or enc.visual is None:
            raise ValueError("contrastive embeddings need both audio and images/frames")
        a = F.normalize(self.audio_embed(masked_mean(enc.audio.tokens, enc.audio.mask)).float(), dim=-1)
        v = F.normalize(self.visual_embed(masked_mean(enc.visual.tokens, enc.visual.mask)).float(), dim=-1)
        return a, v

    def contrastive_logits(self, enc: Encoded) -> Tensor:
        """(B, B) scaled cosine similarities, audio rows against visual columns (CLIP; scale clamped at 100)."""
        a, v = self.embeddings(enc)
        return self.logit_scale.clamp(max=math.log(100.0)).exp() * a @ v.T

    def class_logits(self, enc: Encoded) -> tuple[Tensor | None, Tensor | None]:
        """(single-label (B, C), multi-label (B, M)) logits from the mean fused memory; None where no head."""
        pooled = masked_mean(enc.memory, enc.memory_mask)  # (B, D)
        single = None if self.class_head is None else self.class_head(pooled)
        multi = None if self.label_head is None else self.label_head(pooled)
        return single, multi


def av_described() -> AVTextConfig:
    """The described shape, for parameter accounting: Conformer-L audio (17 x 512), Swin-T vision (224 px), two
    fusion layers and a 48-layer decoder of width 1280 (20 heads of 64, SwiGLU 3456) with a 2048-token context over
    32,000 text ids; ~1.5B parameters (docs/understanding.md)."""
    d = 1280
    return AVTextConfig(
        audio=conformer_l(),
        vision=swin_t(),
        fusion=FusionConfig(dim=d, n_layers=2, n_heads=20, ffn_dim=3456),
        decoder=TextDecoderConfig(
            text_vocab=32000, dim=d, n_layers=48, n_heads=20, ffn_dim=3456, memory_dim=d, max_seq_len=2048
        ),
        contrastive_dim=512,
    )


def av_tiny(text_vocab: int = 1024, num_classes: int = 0, num_labels: int = 0) -> AVTextConfig:
    """A CPU-trainable model (2.98M with 1,024 text ids): Conformer 4 x 96 over 64 mel bins, Swin 2-2 at 64 px
    (64 tokens of 64), one fusion layer and a 4-layer decoder of width 128 with a 64-token context."""
    d = 128
    return AVTextConfig(
        audio=conformer_tiny(),
        vision=swin_tiny(),
        fusion=FusionConfig(dim=d, n_layers=1, n_heads=4, ffn_dim=384),
        decoder=TextDecoderConfig(
            text_vocab=text_vocab, dim=d, n_layers=4, n_heads=4, ffn_dim=384, memory_dim=d, max_seq_len=64
        ),
        contrastive_dim=64,
        num_classes=num_classes,
        num_labels=num_labels,
        modality_dropout=0.3,
    )


#: Preset name -> function returning its config.
AV_PRESETS = {"av_described": av_described, "av_tiny": av_tiny}


def av_preset(name: str) -> AVTextConfig:
    """The config of preset ``name``; an unknown name raises ValueError listing the valid ones."""
    if name not in AV_PRESETS:
        raise ValueError(f"unknown audio-visual preset {name!r}; valid: {', '.join(AV_PRESETS)}")
    return AV_PRESETS[name]()


def param_count(cfg: AVTextConfig) -> dict[str, int]:
    """Parameters per part, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = AVTextModel(cfg)
    parts = {
        "audio": model.audio_encoder,
        "vision": model.video_encoder,
        "fusion": model.fusion,
        "decoder": model.decoder,
    }
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
