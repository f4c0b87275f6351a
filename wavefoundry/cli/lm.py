"""``wavefoundry lm asr|tts|continue|eval``: prompt a discrete audio LM exported from an "lm" run.

    wavefoundry lm asr clip.wav other.wav --model models/lm-speech [--few-shot 2 --manifest M]
    wavefoundry lm tts "hello world" --model models/lm-speech --out hello.wav --seed 0 --temperature 0.8 --top-k 50
    wavefoundry lm continue clip.wav --model models/lm-speech --seconds 3 --out more.wav
    wavefoundry lm eval --model models/lm-speech --manifest M --split valid --limit 50 --out results.json

``eval`` measures, on the manifest's utterances of ``--split`` (``attrs["transcript"]``): the held-out NLL per
modality (nats per target token of text-first and audio-first documents), ASR CER against the transcripts, and TTS
intelligibility, the CER of the model's own ASR on its TTS output (decoded to a waveform and encoded again, as a
listener gets it; ``tts_cer_codes`` on the generated codes directly), next to its ceiling: the ASR CER on the
ground-truth audio (the same number as the ASR CER). CER compares normalised transcripts (NFKC, lower case, single
spaces) character by character.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

TRANSCRIPT_KEY = "transcript"
DEFAULT_MODEL = Path("models/lm-speech-tiny")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lm", help="prompt a discrete audio LM (asr, tts, continue, eval)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    lm = p.add_subparsers(dest="lm_command", required=True, metavar="TASK")

    q = lm.add_parser("asr", help="audio -> transcript")
    q.add_argument("audio", nargs="+", type=Path, help="audio files")
    q.add_argument("--few-shot", type=int, default=0, help="audio-first examples from --manifest (split train)")
    q.add_argument("--manifest", type=Path, default=None, help="speech manifest the few-shot examples come from")
    q.add_argument("--max-new-tokens", type=int, default=None, help="most text ids (default: the room left)")
    _common(q, sampling=False)
    q.set_defaults(func=run_asr)

    q = lm.add_parser("tts", help="text -> audio")
    q.add_argument("text", help="the text to speak")
    q.add_argument("--out", required=True, type=Path, help="output audio file (.wav, .flac)")
    q.add_argument("--seconds-max", type=float, default=10.0, help="longest output (default 10)")
    _common(q)
    q.set_defaults(func=run_tts)

    q = lm.add_parser("continue", help="audio -> the audio and its continuation")
    q.add_argument("audio", type=Path, help="the prefix audio file")
    q.add_argument("--seconds", type=float, required=True, help="continue by at most this long")
    q.add_argument("--out", required=True, type=Path, help="output audio file (.wav, .flac)")
    _common(q)
    q.set_defaults(func=run_continue)

    q = lm.add_parser("eval", help="held-out NLL per modality, ASR CER, TTS CER and its ceiling")
    q.add_argument("--manifest", required=True, type=Path, help="speech manifest with attrs['transcript']")
    q.add_argument("--split", default="valid", help="split to evaluate (default valid)")
    q.add_argument("--limit", type=int, default=None, help="at most this many utterances")
    q.add_argument("--out", required=True, type=Path, help="results .json")
    q.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _common(q)
    q.set_defaults(func=run_eval)


def _common(q: argparse.ArgumentParser, *, sampling: bool = True) -> None:
    q.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help=f"exported audio-LM directory (default {DEFAULT_MODEL}, built-in English speech)")  # fmt: skip
    q.add_argument("--temperature", type=float, default=1.0 if sampling else 0.0, help="0: greedy")
    if sampling:
        q.add_argument("--top-k", type=int, default=None, help="sample from the k most likely ids")
        q.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass")
        q.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _sampling(args: argparse.Namespace) -> dict:
    return {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}


def _load(args: argparse.Namespace):
    from wavefoundry.pipelines import AudioLM

    return AudioLM.from_pretrained(args.model)


def _items(manifest: Path, split: str | None, limit: int | None) -> list:
    from wavefoundry.data.manifest import read_manifest

    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    items = [it for it in read_manifest(manifest) if split is None or it.split == split]
    items = [it for it in items if isinstance(it.attrs.get(TRANSCRIPT_KEY), str) and it.attrs[TRANSCRIPT_KEY].strip()]
    if not items:
        raise ValueError(f"{manifest}: no item of split {split!r} with attrs['{TRANSCRIPT_KEY}']")
    return items if limit is None else items[:limit]


def run_asr(args: argparse.Namespace) -> int:
    from wavefoundry.audio.io import load_audio

    if args.few_shot and args.manifest is None:
        raise ValueError("--few-shot needs --manifest (the examples' audio and transcripts)")
    lm = _load(args)
    shots = []
    if args.few_shot:
        for it in _items(args.manifest, "train", args.few_shot):
            shots.append((*load_audio(it.path), it.attrs[TRANSCRIPT_KEY]))
    for path in args.audio:
        audio, sr = load_audio(path)
        text = lm.asr(audio, sr, few_shot=shots, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
        print(f"{path}\t{text}")
    return 0


def run_tts(args: argparse.Namespace) -> int:
    from wavefoundry.audio.io import save_audio

    audio, sr = _load(args).tts(args.text, seconds_max=args.seconds_max, **_sampling(args))
    save_audio(args.out, audio, sr)
    print(f"wrote {audio.shape[1] / sr:.2f} s to {args.out}")
    return 0


def run_continue(args: argparse.Namespace) -> int:
    from wavefoundry.audio.io import load_audio, save_audio

    audio, sr = load_audio(args.audio)
    out, rate = _load(args).continue_audio(audio, sr, seconds=args.seconds, **_sampling(args))
    save_audio(args.out, out, rate)
    print(f"wrote {out.shape[1] / rate:.2f} s to {args.out}")
    return 0


def heldout_nll(lm, utterances: list) -> dict[str, float]:
    """Token-weighted NLL per modality over each utterance's text-first and audio-first documents."""
    import torch

    from wavefoundry.lm.sequences import utterance_document
    from wavefoundry.train.lm import modality_nll

    sums: dict[str, float] = {}
    for u in utterances:
        for order in ("text_first", "audio_first"):
            ids = utterance_document(lm.layout, [u], order)[: lm.max_seq_len + 1]
            with torch.inference_mode():
                logits = lm.decoder(ids[None, :-1])  # (1, L, V)
            labels = ids[None, 1:]
            parts = modality_nll(logits, labels, torch.ones_like(labels, dtype=torch.bool), lm.layout.text_vocab_size)
            for m in ("text", "audio", "special"):
                n = float(parts[f"tokens_{m}"])
                sums[f"tokens_{m}"] = sums.get(f"tokens_{m}", 0.0) + n
                sums[f"nll_sum_{m}"] = sums.get(f"nll_sum_{m}", 0.0) + float(parts[f"nll_{m}"]) * n
    out = {}
    for m in ("text", "audio", "special"):
        n = sums.get(f"tokens_{m}", 0.0)
        out[f"nll_{m}"] = sums.get(f"nll_sum_{m}", 0.0) / n if n else math.nan
        out[f"tokens_{m}"] = n
    total = sum(out[f"tokens_{m}"] for m in ("text", "audio", "special"))
    out["nll"] = sum(sums.get(f"nll_sum_{m}", 0.0) for m in ("text", "audio", "special")) / max(total, 1.0)
    out["tokens"] = total
    return out


def evaluate(lm, items: list, *, sampling: dict, progress: bool = True) -> dict:
    """NLL per modality, ASR CER (= the TTS ceiling) and TTS CER of the model's ASR on its own TTS output."""
    import torch
    from tqdm.auto import tqdm

    from wavefoundry.audio.io import load_audio
    from wavefoundry.codecs.semantic import char_error_rate, normalize_transcript
    from wavefoundry.lm.sequences import Utterance

    utterances, records = [], []
    through_audio = lm.decode_codec is not None  # a non-prefix codebook selection cannot be decoded
    for it in tqdm(items, desc="lm eval", unit="utt", disable=not progress):
        ref = it.attrs[TRANSCRIPT_KEY]
        audio, sr = load_audio(it.path)
        codes = lm.encode_audio(audio, sr)
        utterances.append(Utterance(text=torch.tensor(lm.text_tokenizer.encode(ref)), codes=codes))
        asr = lm.asr_codes(codes)
        room = (lm.max_seq_len - 12 - 2 * len(utterances[-1].text)) // lm.layout.n_selected / lm.frame_rate
        seconds = min(1.5 * it.duration_s + 0.5, lm.max_tts_seconds(ref), room)  # room: ASR of the output fits
        tts_codes = lm.tts_codes(ref, seconds_max=seconds, **sampling)
        record = {"id": it.id, "transcript": ref, "asr": asr, "tts_seconds": tts_codes.shape[1] / lm.frame_rate}
        record["tts_asr_codes"] = lm.asr_codes(tts_codes) if tts_codes.shape[1] else ""  # the generated codes
        if through_audio:  # what a listener gets: the decoded waveform, encoded again
            heard = lm.decode_codes(tts_codes)
            record["tts_asr"] = lm.asr_codes(lm.encode_audio(heard, lm.sample_rate)) if heard.shape[1] else ""
        records.append(record)
    refs = [normalize_transcript(r["transcript"]) for r in records]

    def cer(key: str) -> float:
        return char_error_rate([normalize_transcript(r[key]) for r in records], refs)

    asr_cer = cer("asr")
    tts = {"tts_cer": cer("tts_asr") if through_audio else math.nan, "tts_cer_codes": cer("tts_asr_codes")}
    return {**heldout_nll(lm, utterances), "asr_cer": asr_cer, **tts, "tts_cer_ceiling": asr_cer,
            "n_utterances": len(records), "items": records}  # fmt: skip


def run_eval(args: argparse.Namespace) -> int:
    lm = _load(args)
    items = _items(args.manifest, args.split, args.limit)
    results = evaluate(lm, items, sampling=_sampling(args), progress=not args.no_progress)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    keys = ("nll", "nll_text", "nll_audio", "asr_cer", "tts_cer", "tts_cer_codes", "tts_cer_ceiling")
    summary = {k: results[k] for k in keys}
    print(" ".join(f"{k}={v:.4f}" for k, v in summary.items()) + f" -> {args.out}")
    return 0
