"""Task "semantic-codec": the "autoencoder" task (RVQ bottleneck) plus a CTC loss that makes codebook 0 semantic.

Generator loss = the autoencoder task's loss (MR-STFT, waveform L1, commitment, later adversarial + feature matching)
+ ``ctc.weight`` * CTC(head(codebook-0 vectors), transcript) (Graves et al. 2006), where the head is the weak 1x1
(or small linear conv) :class:`~wavefoundry.codecs.semantic.CTCHead`; see docs/semantic_tokens.md.

Data: a speech manifest whose items carry ``attrs["transcript"]`` (e.g. the espeak-ng corpus of
``data/speech.py``). CTC needs the whole transcript of the audio it sees, so every sample is a *whole utterance*,
zero-padded to ``data.clip.seconds`` (never a random crop); longer utterances, and those too short in frames for
their transcript, are left out with a warning. The CTC input length of an item is the number of codec frames that
cover its real samples (``padding_mask``); the reconstruction losses also see the padding (silence).

Validation metric ``cer``: greedy CTC decoding of the head over ``codes_to_latents(codes[:, :1])``, i.e. from the
codebook-0 ids alone, against the held-out transcripts (edits / reference characters of each eval batch, averaged
over the eval set by the engine).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from wavefoundry.codecs.autoencoder import AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckConfig, BottleneckOutput, RVQConfig
from wavefoundry.codecs.discriminators import DiscriminatorConfig
from wavefoundry.codecs.losses import LossWeights, STFTLossConfig
from wavefoundry.codecs.oobleck import oobleck_tiny_16k_mono
from wavefoundry.codecs.semantic import (
    CharVocab,
    CTCHead,
    CTCHeadConfig,
    char_error_rate,
    ctc_loss,
    frames_for_samples,
    greedy_decode,
    min_ctc_frames,
)
from wavefoundry.config import ConfigError
from wavefoundry.data.datasets import ClipConfig, ClipDataset
from wavefoundry.data.manifest import ManifestItem
from wavefoundry.train.autoencoding import AutoencoderRunConfig, AutoencoderTask, CodecLossConfig, CodecTrainer
from wavefoundry.train.datasource import DataConfig, eval_clip, prepare_manifest, split_items
from wavefoundry.train.engine import TrainConfig
from wavefoundry.train.optim import OptimConfig
from wavefoundry.train.schedules import ScheduleConfig
from wavefoundry.train.tasks import register

log = logging.getLogger(__name__)

#: The ``attrs`` key that holds an item's transcript.
TRANSCRIPT_KEY = "transcript"


@dataclass(kw_only=True)
class CTCConfig:
    """The auxiliary CTC loss on codebook 0.

    Args:
        weight: multiplies the CTC loss (nats per transcript character) in the generator loss.
        head: the head over codebook 0's vectors.
        vocab: the characters of the CTC vocabulary (ids 2.. in order; 0 blank, 1 unknown). Empty: built from the
            training split's transcripts when the model is first built, so the saved ``config.json`` carries it.
        min_count: when building ``vocab``, characters seen fewer times map to the unknown id.
    """

    weight: float = 1.0
    head: CTCHeadConfig = field(default_factory=CTCHeadConfig)
    vocab: str = ""
    min_count: int = 1

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"ctc.weight must be >= 0, got {self.weight}")
        if self.min_count < 1:
            raise ValueError(f"ctc.min_count must be >= 1, got {self.min_count}")
        if self.vocab:
            CharVocab(self.vocab)  # duplicates raise here, with the config


@dataclass(kw_only=True)
class SemanticCodecRunConfig(AutoencoderRunConfig):
    task: str = "semantic-codec"
    ctc: CTCConfig = field(default_factory=CTCConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.bottleneck.kind != "rvq":
            raise ValueError(f"task semantic-codec needs model.bottleneck.kind=rvq, got {self.model.bottleneck.kind}")


class TranscribedClips(ClipDataset):
    """Whole utterances zero-padded to ``clip.seconds``, each with ``targets`` (S,) int64 transcript ids.

    Args:
        items: manifest items with ``attrs["transcript"]``.
        clip: rate, channels and the padded length (the longest utterance kept); random cropping is turned off.
        vocab: maps transcripts to ids.
        hop: codec samples per frame (to leave out utterances with fewer frames than CTC needs).

    Raises:
        ValueError: an item has no transcript, or no item is left.
    """

    def __init__(self, items: list[ManifestItem], clip: ClipConfig, vocab: CharVocab, *, hop: int) -> None:
        missing = [it.id for it in items if not isinstance(it.attrs.get(TRANSCRIPT_KEY), str)]
        if missing:
            raise ValueError(f"{len(missing)} items have no attrs['{TRANSCRIPT_KEY}'] (e.g. {missing[0]}): "
                             "task semantic-codec needs a speech manifest with transcripts")  # fmt: skip
        length = round(clip.seconds * clip.sample_rate)
        fits = [it for it in items if round(it.duration_s * clip.sample_rate) <= length]
        if len(fits) < len(items):
            log.warning("left out %d of %d utterances longer than data.clip.seconds=%g", len(items) - len(fits),
                        len(items), clip.seconds)  # fmt: skip
        if not fits:
            raise ValueError(f"no utterance fits in data.clip.seconds={clip.seconds}: raise it")
        super().__init__(fits, eval_clip(clip))
        targets = [vocab.encode(it.attrs[TRANSCRIPT_KEY]) for it in self.items]
        frames = [int(frames_for_samples(torch.tensor(min(a.shape[-1], length)), hop)) for a in self.audio]
        keep = [i for i, (t, n) in enumerate(zip(targets, frames, strict=True)) if min_ctc_frames(t) <= n]
        if not keep:
            raise ValueError("no utterance has enough codec frames for its transcript")
        if len(keep) < len(targets):
            short = [it.id for i, it in enumerate(self.items) if i not in set(keep)]
            log.warning("left out %d utterances with fewer codec frames than their transcript needs (e.g. %s)",
                        len(short), short[0])  # fmt: skip
        self.items = [self.items[i] for i in keep]
        self.audio = [self.audio[i] for i in keep]
        self.targets = [torch.tensor(targets[i], dtype=torch.long) for i in keep]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        sample = super().__getitem__(key)
        sample["targets"] = self.targets[key[0]]
        return sample


def collate_transcribed(samples: list[dict]) -> dict[str, Any]:
    """Default collation plus ``targets`` (B, S) padded with 0 and ``target_lengths`` (B,)."""
    targets = [s.pop("targets") for s in samples]
    batch = default_collate(samples)
    lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    padded = torch.zeros(len(targets), max(1, int(lengths.max())), dtype=torch.long)  # (B, S)
    for b, t in enumerate(targets):
        padded[b, : len(t)] = t
    batch["targets"], batch["target_lengths"] = padded, lengths
    return batch


class SemanticCodecTrainer(CodecTrainer):
    """The codec trainer plus ``ctc_head`` over codebook 0 (trained by the generator optimizer)."""

    def __init__(self, cfg: SemanticCodecRunConfig, *, vocab_size: int) -> None:
        super().__init__(cfg)
        self.ctc_head = CTCHead(cfg.ctc.head, dim=cfg.model.bottleneck.rvq.dim, vocab_size=vocab_size)


def codebook0_transcripts(model: SemanticCodecTrainer, codes: Tensor, frames: Tensor) -> list[list[int]]:
    """Greedy CTC decoding from codebook 0's ids alone: codes (B, K, T), valid frames (B,) -> B id lists."""
    vectors = model.autoencoder.bottleneck.codes_to_latents(codes[:, :1])  # (B, D, T)
    return greedy_decode(model.ctc_head(vectors), frames)


@register
class SemanticCodecTask(AutoencoderTask):
    name = "semantic-codec"
    Config = SemanticCodecRunConfig

    def __init__(self, config: SemanticCodecRunConfig) -> None:
        super().__init__(config)
        self._vocab: CharVocab | None = None

    def prepare_data(self) -> None:
        if not self.config.data.manifest:
            raise ConfigError("task semantic-codec needs a speech manifest with attrs['transcript']: "
                              "--set data.manifest=PATH")  # fmt: skip
        prepare_manifest(self.config.data, progress=self.config.train.progress)

    def vocab(self) -> CharVocab:
        """The CTC vocabulary: ``ctc.vocab``, or built from the training transcripts (and written into the config)."""
        if self._vocab is None:
            ctc = self.config.ctc
            if not ctc.vocab:
                train, _ = split_items(self.config.data)
                texts = [str(it.attrs.get(TRANSCRIPT_KEY, "")) for it in train]
                ctc.vocab = CharVocab.build(texts, min_count=ctc.min_count).chars
                log.info("built a %d-character CTC vocabulary from %d transcripts", len(ctc.vocab), len(texts))
            self._vocab = CharVocab(ctc.vocab)
        return self._vocab

    def datasets(self) -> tuple[TranscribedClips, TranscribedClips | None]:
        train, valid = split_items(self.config.data)
        clip, hop, vocab = self.config.data.clip, self.config.model.oobleck.hop_length, self.vocab()
        held_out = TranscribedClips(valid, clip, vocab, hop=hop) if valid else None
        return TranscribedClips(train, clip, vocab, hop=hop), held_out

    def collate(self, samples: list[dict]) -> dict[str, Any]:
        return collate_transcribed(samples)

    def build_model(self) -> nn.Module:
        return SemanticCodecTrainer(self.config, vocab_size=self.vocab().vocab_size)

    def optimizer_groups(self, model: nn.Module) -> dict:
        groups = super().optimizer_groups(model)
        generator = nn.ModuleDict({"autoencoder": model.autoencoder, "ctc_head": model.ctc_head})  # shared params
        return {**groups, "generator": (generator, self.config.optim)}

    def auxiliary_loss(self, model: nn.Module, batch: dict, out: BottleneckOutput) -> tuple[Tensor, dict]:
        """weight * CTC on codebook 0; in eval also ``cer`` of greedy decoding from the codebook-0 ids."""
        frames = frames_for_samples(batch["padding_mask"].sum(-1), self.config.model.oobleck.hop_length)  # (B,)
        targets, lengths = batch["targets"], batch["target_lengths"]
        loss = ctc_loss(model.ctc_head(out.first_quantized), targets, frames, lengths)
        metrics = {"ctc": loss.detach()}
        if not model.training:
            hyps = codebook0_transcripts(model, out.codes, frames)
            refs = [t[:n].tolist() for t, n in zip(targets, lengths.tolist(), strict=True)]
            metrics["cer"] = torch.tensor(char_error_rate(hyps, refs) if sum(lengths.tolist()) else 0.0)
        return self.config.ctc.weight * loss, metrics


def semantic_codec_tiny() -> SemanticCodecRunConfig:
    """RVQ codec for 16 kHz mono speech with a semantic codebook 0: hop 256 (62.5 Hz), 4 x 256 codes, CTC weight 1.

    Needs ``--set data.manifest=PATH`` (a speech manifest with ``attrs["transcript"]``); utterances up to 4 s.
    """
    oobleck = dataclasses.replace(oobleck_tiny_16k_mono(), encoder_out_dim=16)
    rvq = RVQConfig(dim=16, codebook_size=256, num_quantizers=4, quantizer_dropout=0.5)
    return SemanticCodecRunConfig(
        model=AutoencoderConfig(oobleck=oobleck, bottleneck=BottleneckConfig(kind="rvq", rvq=rvq)),
        discriminator=DiscriminatorConfig(audio_channels=1, channels=8, n_ffts=(1024, 512, 256, 128, 64)),
        loss=CodecLossConfig(
            stft=STFTLossConfig(sample_rate=16000, fft_sizes=(1024, 512, 256, 128, 64, 32)),
            weights=LossWeights(adversarial_warmup_steps=1000),
        ),
        ctc=CTCConfig(weight=1.0),
        data=DataConfig(clip=ClipConfig(sample_rate=16000, channels=1, seconds=4.0)),
        train=TrainConfig(steps=1500, batch_size=8, eval_every=250, ckpt_every=100, log_every=25, ema_decay=0.999),
        optim=OptimConfig(lr=5e-4, betas=(0.8, 0.99), weight_decay=1e-3),
        disc_optim=OptimConfig(lr=5e-4, betas=(0.8, 0.99), weight_decay=1e-3),
        schedule=ScheduleConfig(name="cosine", warmup_steps=100, min_ratio=0.1),
    )


def semantic_codec_tiny_ft() -> SemanticCodecRunConfig:
    """``semantic_codec_tiny`` fine-tuned from the ``codec-tiny-rvq`` weights (the same codec shape): 400 steps,
    20 warm-up steps, no adversarial phase. The recipe of ``models/lm-speech-tiny/codec``: reconstruction comes
    with the start, so the steps go to making codebook 0 semantic.
    """
    cfg = semantic_codec_tiny()
    cfg.train = dataclasses.replace(
        cfg.train, steps=400, eval_every=100, ckpt_every=50, init_from="models/codec-tiny-rvq"
    )
    cfg.schedule = dataclasses.replace(cfg.schedule, warmup_steps=20)
    cfg.loss.weights = dataclasses.replace(cfg.loss.weights, adversarial_warmup_steps=100_000)  # after the end: off
    return cfg
