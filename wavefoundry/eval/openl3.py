"""OpenL3 as a :class:`~wavefoundry.eval.embedders.FrameEmbedder` for FD_openl3, and its weight loading.

Framing follows openl3 0.4.2 ``get_audio_embedding`` (openl3/core.py ``_preprocess_audio_batch``) with
``center=True``: the 48 kHz signal gets 24,000 zeros (half a window) in front, is zero-padded at the end so that
every sample falls in a window, and is cut into 1 s windows every ``int(hop_s * 48000)`` samples, so a file of T
samples (at 48 kHz) gives 1 window if ``T + 24000 <= 48000`` and ``1 + ceil((T - 24000) / hop)`` otherwise.
Window k is centred on ``k * hop_s`` seconds.

Channels follow stable-audio-metrics ``openl3_fd.extract_embeddings``: "lr-concat" embeds the left and the right
channel on their own and concatenates the two 512-d embeddings of each window into 1024-d ([left | right]); mono
files are duplicated (so both halves are equal). "mono" averages the channels first (openl3's own downmix).

Weights are read from local files only: the Keras HDF5 file that the openl3 package installs
(``openl3_audio_mel256_music.h5``, read with h5py) or a safetensors file in this module's key layout (written by
:func:`save_openl3_safetensors` / :func:`convert_openl3_h5`). See docs/openl3.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from wavefoundry.eval.embedders import EmbedderInfo, file_sha256, prepare, split_windows
from wavefoundry.understanding.openl3 import SAMPLE_RATE, WINDOW, OpenL3Config, OpenL3Network

logger = logging.getLogger(__name__)

#: Channel modes OpenL3 supports here ("stereo", two channels into one network, has no OpenL3 meaning).
OPENL3_CHANNEL_MODES = ("lr-concat", "mono")
CONTENT_TYPES = ("music", "env")
#: Keras weight layers of the audio network in model order (openl3/models.py ``_construct_mel256_audio_network``;
#: Keras 2 auto-names, as also used by torchopenl3) -> our module prefix and the layer kind.
KERAS_LAYERS: tuple[tuple[str, str, str], ...] = (
    ("batch_normalization_1", "input_norm", "bn"),
    ("conv2d_1", "blocks.0.conv1", "conv"),
    ("batch_normalization_2", "blocks.0.norm1", "bn"),
    ("conv2d_2", "blocks.0.conv2", "conv"),
    ("batch_normalization_3", "blocks.0.norm2", "bn"),
    ("conv2d_3", "blocks.1.conv1", "conv"),
    ("batch_normalization_4", "blocks.1.norm1", "bn"),
    ("conv2d_4", "blocks.1.conv2", "conv"),
    ("batch_normalization_5", "blocks.1.norm2", "bn"),
    ("conv2d_5", "blocks.2.conv1", "conv"),
    ("batch_normalization_6", "blocks.2.norm1", "bn"),
    ("conv2d_6", "blocks.2.conv2", "conv"),
    ("batch_normalization_7", "blocks.2.norm2", "bn"),
    ("conv2d_7", "blocks.3.conv1", "conv"),
    ("batch_normalization_8", "blocks.3.norm1", "bn"),
    ("audio_embedding_layer", "blocks.3.conv2", "conv"),
)
#: Layer kind -> (Keras weight name, our parameter/buffer name), in Keras's saved order.
KERAS_WEIGHTS: dict[str, tuple[tuple[str, str], ...]] = {
    "conv": (("kernel", "weight"), ("bias", "bias")),
    "bn": (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var")),
}
#: Layers of pre-0.4 weight files that held kapre 0.1.4's fixed DFT/mel kernels; the front end is computed here.
_FRONTEND_LAYER = "spectrogram"
_H5_NAME = re.compile(r"openl3_audio_(linear|mel128|mel256)_(music|env)")
_SAFETENSORS_FORMAT = "wavefoundry.openl3"


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            "reading OpenL3's Keras .h5 weights needs h5py: pip install 'wavefoundry[eval]' (or h5py), "
            "or convert the file once with wavefoundry.eval.openl3.convert_openl3_h5 and load the .safetensors"
        ) from exc
    return h5py


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _short_name(weight_path: str) -> str:
    """'conv2d_1/conv2d_1/kernel:0' -> 'kernel' (Keras saves '<layer>/<weight>:0' under the layer group)."""
    return weight_path.rsplit("/", 1)[-1].split(":", 1)[0]


def read_keras_h5(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Weight arrays of a Keras HDF5 weights file: {layer name: {weight name: array}}, in the file's layer order.

    Reads both layouts Keras writes: ``save_weights`` (layers at the root) and ``save`` (under ``model_weights``),
    each layer a group whose ``weight_names`` attribute lists datasets like ``conv2d_1/kernel:0``. Layers without
    weights (activations, pooling, input) are left out.
    """
    h5py = _import_h5py()
    layers: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as fh:
        root = fh.get("model_weights", fh)
        if "layer_names" not in root.attrs:
            raise ValueError(f"{path}: no 'layer_names' attribute; not a Keras 2 HDF5 weights file")
        for name in (_text(n) for n in root.attrs["layer_names"]):
            group = root.get(name)
            if group is None or "weight_names" not in group.attrs:
                raise ValueError(f"{path}: layer {name!r} is listed in layer_names but has no weight group")
            arrays: dict[str, np.ndarray] = {}
            for weight in (_text(w) for w in group.attrs["weight_names"]):
                if weight not in group:
                    raise ValueError(f"{path}: layer {name!r} lists weight {weight!r} but the file lacks it")
                arrays[_short_name(weight)] = np.asarray(group[weight])
            if arrays:
                layers[name] = arrays
    if not layers:
        raise ValueError(f"{path}: no Keras weight layers found (is it a Keras 2 HDF5 weights file?)")
    return layers


def _match_layers(layers: Mapping[str, Any], source: str) -> dict[str, str]:
    """Map each of :data:`KERAS_LAYERS` to a layer of the file: by name, else by order (Keras ``load_weights``)."""
    names = [n for n in layers if _FRONTEND_LAYER not in n]
    skipped = [n for n in layers if _FRONTEND_LAYER in n]
    if skipped:
        logger.info("%s: ignoring front-end layers %s (the mel front end is computed, not loaded)", source, skipped)
    expected = [k for k, _, _ in KERAS_LAYERS]
    missing = [k for k in expected if k not in names]
    unexpected = [n for n in names if n not in expected]
    if not missing and not unexpected:
        return {k: k for k in expected}
    if len(names) == len(expected):
        # Another Keras version's auto-names (tf.keras counts from 'conv2d', not 'conv2d_1'): openl3 itself loads
        # with model.load_weights(path), which pairs weight layers by model order, not by name, so do the same;
        # the kind and shape checks that follow still catch a file of another network.
        logger.info("%s: layer names differ from openl3's; matching its %d weight layers by order", source, len(names))
        return dict(zip(expected, names, strict=True))
    raise ValueError(
        f"{source}: {len(names)} weight layers, not the OpenL3 audio network's {len(expected)}; "
        f"missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'}"
    )


def keras_to_state_dict(layers: Mapping[str, Mapping[str, np.ndarray]], source: str = "weights") -> dict[str, Tensor]:
    """Our state dict from Keras arrays: conv kernels HWIO -> OIHW, BN gamma/beta/moving_mean/moving_variance."""
    matched = _match_layers(layers, source)
    state: dict[str, Tensor] = {}
    for keras_name, prefix, kind in KERAS_LAYERS:
        name = matched[keras_name]
        arrays = layers[name]
        wanted = [k for k, _ in KERAS_WEIGHTS[kind]]
        missing = [k for k in wanted if k not in arrays]
        extra = [k for k in arrays if k not in wanted]
        if missing or extra:
            raise ValueError(
                f"{source}: layer {name!r} ({kind}) has weights {sorted(arrays)}; "
                f"missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}"
            )
        for keras_weight, ours in KERAS_WEIGHTS[kind]:
            value = np.asarray(arrays[keras_weight], dtype=np.float32)
            if keras_weight == "kernel":
                if value.ndim != 4:
                    raise ValueError(f"{source}: {name}/kernel must be 4-D (kh, kw, in, out), got {value.shape}")
                value = value.transpose(3, 2, 0, 1)  # (kh, kw, C_in, C_out) -> (C_out, C_in, kh, kw)
            state[f"{prefix}.{ours}"] = torch.from_numpy(np.ascontiguousarray(value))
    return state


def load_state(network: OpenL3Network, state: Mapping[str, Tensor], source: str = "weights") -> None:
    """Copy ``state`` into ``network``, checking that every key is present and every shape matches."""
    own = {k: v for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        missing_txt, unexpected_txt = ", ".join(missing) or "none", ", ".join(unexpected) or "none"
        raise ValueError(f"{source}: missing keys: {missing_txt}; unexpected keys: {unexpected_txt}")
    bad = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        raise ValueError(f"{source}: wrong shapes (file != network): {'; '.join(bad)}")
    network.load_state_dict(dict(state), strict=False)


def save_openl3_safetensors(
    network: OpenL3Network, path: str | Path, *, content_type: str, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``network``'s weights as safetensors in our key layout, with input_repr and content_type metadata."""
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"unknown content_type {content_type!r}; valid: {', '.join(CONTENT_TYPES)}")
    items = network.state_dict().items()
    state = {k: v.detach().cpu().contiguous() for k, v in items if not k.endswith("num_batches_tracked")}
    meta = {
        **(metadata or {}),
        "format": _SAFETENSORS_FORMAT,
        "input_repr": network.cfg.input_repr,
        "content_type": content_type,
    }
    path = Path(path)
    save_file(state, str(path), metadata=meta)
    return path


def _check_name(kind: str, found: str | None, given: str, source: str) -> None:
    if found is not None and found != given:
        raise ValueError(f"{source} is an OpenL3 {found!r} model but {kind}={given!r} was asked for")


def _h5_state(path: Path, input_repr: str, content_type: str) -> dict[str, Tensor]:
    match = _H5_NAME.search(path.name)
    if match:
        if match.group(1) == "linear":
            raise ValueError(f"{path.name}: the linear-spectrogram OpenL3 model is not supported; use mel256 or mel128")
        _check_name("input_repr", match.group(1), input_repr, path.name)
        _check_name("content_type", match.group(2), content_type, path.name)
    return keras_to_state_dict(read_keras_h5(path), source=path.name)


def _safetensors_state(path: Path, input_repr: str, content_type: str) -> dict[str, Tensor]:
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    if meta.get("format") not in (None, _SAFETENSORS_FORMAT):
        raise ValueError(f"{path.name}: format {meta['format']!r} is not {_SAFETENSORS_FORMAT!r}")
    _check_name("input_repr", meta.get("input_repr"), input_repr, path.name)
    _check_name("content_type", meta.get("content_type"), content_type, path.name)
    return state


def load_openl3_network(
    path: str | Path, *, content_type: str = "music", input_repr: str = "mel256", embedding_size: int = 512
) -> OpenL3Network:
    """Build the network and load weights from a local ``.h5`` (Keras, needs h5py) or ``.safetensors`` file.

    ``input_repr`` and ``content_type`` are checked against the file name (``openl3_audio_mel256_music.h5``) or the
    safetensors metadata when those say; the weights themselves cannot tell mel128 from mel256 or music from env.
    """
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"unknown content_type {content_type!r}; valid: {', '.join(CONTENT_TYPES)}")
    cfg = OpenL3Config(input_repr=input_repr, embedding_size=embedding_size)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OpenL3 weights not found: {path} (see docs/openl3.md for which file to use)")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        state = _h5_state(path, input_repr, content_type)
    elif suffix == ".safetensors":
        state = _safetensors_state(path, input_repr, content_type)
    else:
        raise ValueError(f"{path.name}: expected an OpenL3 .h5 (Keras) or .safetensors file, got {suffix!r}")
    network = OpenL3Network(cfg)
    load_state(network, state, source=path.name)
    return network.eval()


def convert_openl3_h5(h5_path: str | Path, out_path: str | Path, *, content_type: str | None = None) -> Path:
    """Convert openl3's Keras ``openl3_audio_<repr>_<content>.h5`` into a safetensors file in our layout."""
    h5_path = Path(h5_path)
    match = _H5_NAME.search(h5_path.name)
    content = content_type or (match.group(2) if match else None)
    if content is None:
        raise ValueError(f"{h5_path.name}: cannot tell music from env by the name; pass content_type=")
    input_repr = match.group(1) if match else "mel256"
    network = load_openl3_network(h5_path, content_type=content, input_repr=input_repr)
    return save_openl3_safetensors(network, out_path, content_type=content, metadata={"source": h5_path.name})


def frame_audio(audio: np.ndarray, hop: int) -> np.ndarray:
    """openl3 ``_preprocess_audio_batch(center=True)`` framing of (C, T) 48 kHz audio: (N, C, 48000) windows."""
    padded = np.pad(audio, ((0, 0), (WINDOW // 2, 0)))  # (C, T + 24000): window k is centred on sample k * hop
    return split_windows(padded, WINDOW, hop, pad_last=True)  # (N, C, WINDOW)


class OpenL3Embedder:
    """OpenL3 frame embeddings of whole files: ``embed(audio (C, T), sr) -> (N, dim)`` float64.

    Args:
        model: an :class:`OpenL3Network` with loaded weights (put in eval mode and channels-last layout).
        weights_sha256: hash of the weights file (:func:`~wavefoundry.eval.embedders.file_sha256`).
        content_type: "music" or "env", the weights' training content (goes into the embedder's name).
        channel_mode: "lr-concat" (dim 2 * embedding_size) or "mono".
        hop_s: seconds between windows (FD_openl3 uses 0.5).
        batch_size: windows per forward pass.
        device: where the network runs.
    """

    def __init__(
        self,
        model: OpenL3Network,
        *,
        weights_sha256: str,
        content_type: str = "music",
        channel_mode: str = "lr-concat",
        hop_s: float = 0.5,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
    ) -> None:
        if channel_mode not in OPENL3_CHANNEL_MODES:
            raise ValueError(f"unknown OpenL3 channel_mode {channel_mode!r}; valid: {', '.join(OPENL3_CHANNEL_MODES)}")
        if content_type not in CONTENT_TYPES:
            raise ValueError(f"unknown content_type {content_type!r}; valid: {', '.join(CONTENT_TYPES)}")
        self.hop = int(hop_s * SAMPLE_RATE)  # openl3: hop_len = int(hop_size * TARGET_SR)
        if self.hop < 1 or batch_size < 1:
            raise ValueError(f"need hop_s >= 1 / {SAMPLE_RATE} s and batch_size >= 1, got {hop_s}, {batch_size}")
        # Channels-last conv weights let oneDNN (and cuDNN) pick NHWC kernels: 1.3x faster on CPU, same outputs
        # to 1e-7 (measured side by side, batch 8); the layout follows from the weights, the inputs need no change.
        self.model = model.eval().to(device, memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.batch_size = batch_size
        cfg = model.cfg
        self.dim = cfg.embedding_size * (2 if channel_mode == "lr-concat" else 1)
        self.info = EmbedderInfo(
            name=f"openl3-{cfg.input_repr}-{content_type}-{cfg.embedding_size}",
            weights_sha256=weights_sha256,
            sample_rate=SAMPLE_RATE,
            window_s=WINDOW / SAMPLE_RATE,
            hop_s=self.hop / SAMPLE_RATE,
            channel_mode=channel_mode,
        )

    def _run(self, windows: np.ndarray) -> np.ndarray:
        """Network on (B, 48000) windows in batches: (B, embedding_size) float64."""
        out = []
        with torch.inference_mode():
            for start in range(0, windows.shape[0], self.batch_size):
                chunk = np.ascontiguousarray(windows[start : start + self.batch_size], dtype=np.float32)
                out.append(self.model(torch.from_numpy(chunk).to(self.device)).double().cpu().numpy())
        return np.concatenate(out)

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Embeddings (N, dim) float64 of one file's audio (C, T) at rate ``sr``; row k is centred on k * hop_s."""
        x = prepare(audio, sr, self.info)  # (C', T') float32 at 48 kHz; C' = 2 for lr-concat, 1 for mono
        if not np.any(x):
            logger.warning("OpenL3: the audio is all zeros")  # openl3 warns too; the embedding is still defined
        windows = frame_audio(x, self.hop)  # (N, C', W)
        # Each channel goes through the network alone; lr-concat puts them side by side (stable-audio-metrics).
        return np.concatenate([self._run(windows[:, c]) for c in range(windows.shape[1])], axis=1)  # (N, C' * D)


def load_openl3(
    path: str | Path,
    *,
    content_type: str = "music",
    channel_mode: str = "lr-concat",
    input_repr: str = "mel256",
    embedding_size: int = 512,
    hop_s: float = 0.5,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> OpenL3Embedder:
    """The FD_openl3 embedder from a local weights file (``openl3_audio_mel256_music.h5`` or a .safetensors)."""
    network = load_openl3_network(path, content_type=content_type, input_repr=input_repr, embedding_size=embedding_size)
    return OpenL3Embedder(
        network,
        weights_sha256=file_sha256(path),
        content_type=content_type,
        channel_mode=channel_mode,
        hop_s=hop_s,
        batch_size=batch_size,
        device=device,
    )
