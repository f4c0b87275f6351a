"""WebService without Gradio: request bounds, model loading failures, the admission gate, the result folder, and
that the shown ``wavefoundry generate`` command reproduces the page's audio exactly."""

import shlex
import threading
from pathlib import Path

import numpy as np
import pytest

from wavefoundry.audio.io import load_audio
from wavefoundry.cli import main
from wavefoundry.web.service import (
    AdmissionGate,
    GenerationRequest,
    QueueFullError,
    RequestError,
    ResultStore,
    WebLimits,
    WebService,
)

T2A = Path(__file__).resolve().parents[2] / "models" / "t2a-tiny"
FAST = {"seconds": 1.0, "steps": 2, "cfg_scale": 5.0}


@pytest.fixture(scope="module")
def service():
    svc = WebService({"tiny": T2A, "broken": T2A.parent / "no-such-model"}, WebLimits(max_seconds=8.0))
    yield svc
    svc.close()


def _request(**kw) -> GenerationRequest:
    return GenerationRequest(**{"model": "tiny", "prompt": "a sine-wave synth playing a single C4 note", **FAST, **kw})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * 501}, "limit is"),
        ({"negative_prompt": "y" * 501}, "negative prompt has 501"),
        ({"seconds": 9.0}, "duration"),
        ({"seconds": float("nan")}, "duration"),
        ({"seconds": "long"}, "must be a number"),
        ({"steps": 0}, "steps"),
        ({"steps": 10**9}, "steps"),
        ({"steps": 2.5}, "an integer"),
        ({"cfg_scale": -1.0}, "CFG"),
        ({"cfg_scale": float("inf")}, "CFG"),
        ({"seed": -3}, "seed"),
        ({"seed": 2**40}, "seed"),
        ({"sampler": "ddim"}, "unknown sampler"),
        ({"model": "other"}, "unknown model"),
        ({"init_noise": 0.0}, "init noise"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(service, change, message):
    with pytest.raises(RequestError, match=message):
        service.check(_request(**change))


def test_a_model_that_fails_to_load_is_reported_and_the_service_goes_on(service):
    with pytest.raises(RequestError, match="'broken' could not be loaded"):
        service.generate(_request(model="broken"))
    result = service.generate(_request())
    assert result.audio.shape == (2, result.sample_rate) and np.abs(result.audio).max() > 0


def test_normalised_request_is_what_is_reported(service):
    _, req = service.check(_request(prompt="  rain  ", steps=3.0, seed=7.0))
    assert (req.prompt, req.steps, req.seed) == ("rain", 3, 7)
    assert isinstance(req.steps, int) and isinstance(req.seed, int)


def test_outputs_and_the_cli_command_reproduce_the_audio(service, tmp_path):
    result = service.generate(_request(seed=11, negative_prompt="noise"))
    assert result.wav.parent.parent == service.store.root
    wav, sr = load_audio(result.wav)
    flac, _ = load_audio(result.flac)
    assert sr == result.sample_rate and wav.shape == flac.shape == result.audio.shape
    assert np.abs(flac - wav).max() < 1e-4  # both 16-bit PCM of the same samples
    assert result.spectrogram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.settings["seed"] == 11 and result.settings["negative_prompt"] == "noise"
    # The shown command, run as it is (with another output path), writes the same samples.
    argv = shlex.split(result.command)
    assert argv[:2] == ["wavefoundry", "generate"] and argv[-2:] == ["--out", "out.wav"]
    out = tmp_path / "cli.wav"
    assert main([*argv[1:-1], str(out), "--no-progress"]) == 0
    cli, _ = load_audio(out)
    np.testing.assert_array_equal(cli, wav)


def test_init_audio_is_bounded_and_used(service):
    sr = 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    for bad, message in [
        (np.zeros((3, sr), np.float32), "mono or stereo"),
        (np.zeros((1, 0), np.float32), "mono or stereo"),
        (np.full((1, sr), np.nan, np.float32), "NaN"),
        (np.zeros((1, 61 * sr), np.float32), "longer than 60 s"),
    ]:
        with pytest.raises(RequestError, match=message):
            service.generate(_request(), (bad, sr))
    with pytest.raises(RequestError, match="sample rate"):
        service.generate(_request(), (tone, 100))
    plain = service.generate(_request(seed=1))
    guided = service.generate(_request(seed=1, init_noise=1.0), (tone, sr))
    with pytest.raises(RequestError, match="init noise level must be in"):  # the pipeline's bound, passed on
        service.generate(_request(init_noise=0.05), (tone, sr))
    assert guided.settings["init_audio"] and "--init-audio" in guided.command
    assert not np.allclose(plain.audio, guided.audio)


def test_gate_admits_concurrency_plus_queue_and_refuses_the_rest():
    gate = AdmissionGate(concurrency=1, queue_size=2)
    release, entered, results = threading.Event(), threading.Semaphore(0), []

    def hold():
        try:
            with gate.admit():
                entered.release()
                release.wait(10)
            results.append("done")
        except QueueFullError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=10)  # one runs, two wait
    while gate.admitted < 3:
        threading.Event().wait(0.01)
    with pytest.raises(QueueFullError, match="busy"), gate.admit():
        pass
    release.set()
    for t in threads:
        t.join(10)
    assert results == ["done"] * 3 and gate.admitted == 0
    with gate.admit():  # free again
        assert gate.admitted == 1


def test_result_store_keeps_the_newest_and_close_removes_everything():
    store = ResultStore(keep=2)
    folders = []
    for _ in range(4):
        folders.append(store.new())
        (folders[-1] / "x.wav").write_bytes(b"1")
    assert [f.exists() for f in folders] == [False, False, True, True]
    store.close()
    assert not store.root.exists()


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_seconds"):
        WebLimits(max_seconds=0)
    with pytest.raises(ValueError, match="queue_size"):
        WebLimits(queue_size=-1)
    with pytest.raises(ValueError, match="at least one model"):
        WebService({})
