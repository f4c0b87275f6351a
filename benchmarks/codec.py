"""Benchmark: Oobleck encoder/decoder at Stable Audio Open 1.0 size, ours against diffusers' AutoencoderOobleck.

    .venv/bin/python benchmarks/codec.py [--seconds 2 10] [--repeats 3] [--memory-seconds 47] [--chunk-frames 128]
                                         [--skip-memory] [--threads N]

Both models hold the same random weights (diffusers' init, loaded into ours through wavefoundry.formats.oobleck).
Ours runs as it should for inference: weight norm folded into channels-last convs (``remove_weight_norm``) and the
in-place Snake path of ``torch.inference_mode``; diffusers runs its modules as shipped, also under
``torch.inference_mode``. Runs alternate between the two so that load on a shared machine hits both alike; the
table shows medians and the ratio diffusers / ours (> 1: ours is faster) on 44.1 kHz stereo.

Then peak memory (VmHWM, the resident high-water mark) of decoding ``--memory-seconds`` of audio in one pass versus
``wavefoundry.codecs.chunked.decode_chunked``, each in a fresh subprocess; "decode" is the peak minus the
resident size just before decoding. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from wavefoundry.codecs.oobleck import OobleckDecoder, OobleckEncoder, oobleck_sao
from wavefoundry.codecs.receptive import decoder_context
from wavefoundry.formats.oobleck import from_diffusers

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.nn.utils.weight_norm inside diffusers


def build_pair(seed: int = 0):
    """(diffusers AutoencoderOobleck, our encoder, our decoder) with the same random weights."""
    from diffusers import AutoencoderOobleck

    torch.manual_seed(seed)
    ref = AutoencoderOobleck().eval()
    with torch.no_grad():  # random Snake parameters, as a trained model has
        for name, p in ref.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(0.3 * torch.randn(p.shape))
    cfg = oobleck_sao()
    enc_state, dec_state = from_diffusers(ref.state_dict(), cfg)
    enc, dec = OobleckEncoder(cfg), OobleckDecoder(cfg)
    enc.load_state_dict(enc_state)
    dec.load_state_dict(dec_state)
    return ref, enc.eval().remove_weight_norm(), dec.eval().remove_weight_norm()


def timed(fn, arg) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn(arg)
    return time.perf_counter() - start, out


def time_codecs(seconds: list[float], repeats: int) -> list[tuple[str, float, float, float, float]]:
    """Rows (op, seconds of audio, diffusers median s, ours median s, max |difference|)."""
    ref, enc, dec = build_pair()
    cfg = enc.cfg
    rows = []
    with torch.inference_mode():
        warm = torch.randn(1, 2, cfg.hop_length * 8)
        for fn in (enc, ref.encoder):
            fn(warm)
        for fn in (dec, ref.decoder):
            fn(torch.randn(1, cfg.latent_dim, 8))
        for sec in seconds:
            frames = math.ceil(sec * cfg.sample_rate / cfg.hop_length)
            x = torch.randn(1, cfg.audio_channels, frames * cfg.hop_length)
            z = torch.randn(1, cfg.latent_dim, frames)
            for op, ours, theirs, inp in (("encode", enc, ref.encoder, x), ("decode", dec, ref.decoder, z)):
                t_ours, t_theirs, diff = [], [], 0.0
                for _ in range(repeats):
                    t, a = timed(ours, inp)
                    t_ours.append(t)
                    t, b = timed(theirs, inp)
                    t_theirs.append(t)
                    diff = max(diff, (a - b).abs().max().item())
                    del a, b
                rows.append((op, sec, statistics.median(t_theirs), statistics.median(t_ours), diff))
                print(f"  {op} {sec:g} s done", file=sys.stderr, flush=True)
    return rows


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status in MB (Linux), or None."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def rss_mb() -> float:
    """Current resident set size in MB."""
    return _status_mb("VmRSS") or float("nan")


def peak_mb() -> float:
    """Peak resident set size of this process in MB.

    VmHWM is reset by exec; ru_maxrss is not (a child started from a big parent reports at least the parent's
    size at fork), so it is only the fallback where /proc is missing.
    """
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_memory(mode: str, seconds: float, chunk_frames: int) -> dict:
    """Decode ``seconds`` of audio in this (fresh) process; returns timings and memory figures."""
    cfg = oobleck_sao()
    torch.manual_seed(0)
    if mode == "diffusers":
        from diffusers import AutoencoderOobleck

        decoder = AutoencoderOobleck().decoder.eval()
    else:
        decoder = OobleckDecoder(cfg).eval().remove_weight_norm()
    if mode == "chunked":
        from wavefoundry.codecs.chunked import decode_chunked

        context = decoder_context(cfg)

        def run(z):
            return decode_chunked(decoder, z, hop=cfg.hop_length, chunk_frames=chunk_frames, context_frames=context)
    else:
        run = decoder
    z = torch.randn(1, cfg.latent_dim, math.ceil(seconds * cfg.sample_rate / cfg.hop_length))
    gc.collect()
    before = rss_mb()
    with torch.inference_mode():
        start = time.perf_counter()
        y = run(z)
        elapsed = time.perf_counter() - start
    return {"mode": mode, "before_mb": before, "peak_mb": peak_mb(), "seconds": elapsed, "samples": y.shape[-1]}


def memory_table(seconds: float, chunk_frames: int) -> None:
    try:
        import wavefoundry.codecs.chunked  # noqa: F401

        modes = ["full", "chunked", "diffusers"]
    except ImportError:
        print("chunked decode not available")
        modes = ["full", "diffusers"]
    print(f"\nPeak memory, decoding {seconds:g} s of 44.1 kHz stereo (fresh process each; chunk {chunk_frames} frames)")
    print(f"{'decoder':>22} {'time s':>8} {'RSS before MB':>14} {'peak MB':>9} {'decode MB':>10}")
    for mode in modes:
        cmd = [sys.executable, __file__, "--measure", mode, "--memory-seconds", str(seconds)]
        cmd += ["--chunk-frames", str(chunk_frames)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        label = {"full": "ours, one pass", "chunked": "ours, chunked", "diffusers": "diffusers, one pass"}[mode]
        decode_mb = r["peak_mb"] - r["before_mb"]
        print(f"{label:>22} {r['seconds']:>8.1f} {r['before_mb']:>14.0f} {r['peak_mb']:>9.0f} {decode_mb:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[2.0, 10.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-seconds", type=float, default=47.0)
    parser.add_argument("--chunk-frames", type=int, default=128, help="latent frames per chunk (128: ~6 s)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--measure", choices=["full", "chunked", "diffusers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.measure:
        print(json.dumps(measure_memory(args.measure, args.memory_seconds, args.chunk_frames)))
        return
    if not args.skip_timing:
        rows = time_codecs(args.seconds, args.repeats)
        print(f"Oobleck, Stable Audio Open 1.0 size, 44.1 kHz stereo, batch 1, {torch.get_num_threads()} threads, "
              f"median of {args.repeats}")  # fmt: skip
        print(f"{'op':>7} {'audio s':>8} {'diffusers s':>12} {'ours s':>8} {'diffusers/ours':>15} {'max |diff|':>11}")
        for op, sec, theirs, ours, diff in rows:
            print(f"{op:>7} {sec:>8g} {theirs:>12.2f} {ours:>8.2f} {theirs / ours:>15.2f} {diff:>11.1e}")
    if not args.skip_memory:
        memory_table(args.memory_seconds, args.chunk_frames)


if __name__ == "__main__":
    main()
