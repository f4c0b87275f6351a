"""``wavefoundry serve``: a local Gradio page and API over :class:`~wavefoundry.web.service.WebService`.

The page: model, prompt, negative prompt, duration, steps, CFG scale, sampler, seed (with a random button), init
audio and its noise level -> audio player, spectrogram, WAV and FLAC downloads, the settings used and the equivalent
``wavefoundry generate`` command. Scripts call the same function through ``gradio_client`` under the API name
``/generate`` (docs/web.md). Gradio's queue holds at most ``queue_size`` waiting requests and runs ``concurrency``
at once; the service's own gate enforces the same bounds for any other caller.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

from wavefoundry.audio.io import AudioError, load_audio
from wavefoundry.pipelines import SAMPLER_NAMES
from wavefoundry.web.service import GenerationRequest, RequestError, WebService

log = logging.getLogger("wavefoundry.web")

#: The API name of the generation endpoint (``Client(url).predict(..., api_name=API_NAME)``).
API_NAME = "/generate"
#: Order of the endpoint's inputs, as ``gradio_client`` passes them.
INPUTS = ("model", "prompt", "negative_prompt", "seconds", "steps", "cfg_scale", "sampler", "seed",
          "init_audio", "init_noise")  # fmt: skip
#: Gradio's upload and cache folder, inside the service's temporary folder (so closing removes it).
GRADIO_DIR = "gradio"


def _gradio(service: WebService):
    """Import Gradio with analytics off and its temporary files inside the service's folder."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_TEMP_DIR", str(service.store.root / GRADIO_DIR))
    try:
        import gradio as gr
    except ImportError:
        raise RuntimeError("the web UI needs gradio: pip install 'wavefoundry[web]'") from None
    return gr


def _read_upload(gr, service: WebService, path: str | None) -> tuple[Any, int] | None:
    """Samples of an uploaded init audio file; only files inside Gradio's own upload folder are read."""
    if not path:
        return None
    upload_root = Path(gr.utils.get_upload_folder()).resolve()
    file = Path(path).resolve()
    if not file.is_relative_to(upload_root):
        raise RequestError("init audio must be uploaded through the page or gradio_client's handle_file")
    try:
        return load_audio(file, max_seconds=service.limits.max_init_seconds)
    except AudioError as exc:
        raise RequestError(f"unsupported init audio: {str(exc).replace(str(file), file.name)}") from None


def build_app(service: WebService):
    """The Gradio Blocks app (not launched). Its queue is sized from ``service.limits``."""
    gr = _gradio(service)
    limits = service.limits

    def generate(model, prompt, negative_prompt, seconds, steps, cfg_scale, sampler, seed, init_audio, init_noise):
        try:
            request = GenerationRequest(model=model, prompt=prompt, negative_prompt=negative_prompt or "",
                                        seconds=seconds, steps=steps, cfg_scale=cfg_scale, sampler=sampler,
                                        seed=seed, init_noise=init_noise)  # fmt: skip
            result = service.generate(request, _read_upload(gr, service, init_audio))
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # keep serving; say what went wrong in one line
            log.exception("generation failed")
            raise gr.Error(f"generation failed: {exc}", print_exception=False) from None
        status = f"Generated {result.settings['seconds']:g} s in {result.seconds_elapsed:.1f} s (seed {request.seed})."
        return (str(result.wav), str(result.spectrogram), [str(result.wav), str(result.flac)], result.settings,
                result.command, status)  # fmt: skip

    with gr.Blocks(title="wavefoundry", analytics_enabled=False, delete_cache=(600, 3600)) as app:
        gr.Markdown("# wavefoundry: text to audio\nDescribe a sound, set the duration and sampling, then generate.")
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown(service.models, value=service.models[0], label="Model")
                prompt = gr.Textbox(label="Prompt", lines=2, max_length=limits.max_prompt_chars, elem_id="prompt",
                                    placeholder="a sine-wave synth playing a single C4 note")  # fmt: skip
                negative = gr.Textbox(label="Negative prompt", max_length=limits.max_prompt_chars)
                seconds = gr.Slider(0.5, limits.max_seconds, value=min(4.0, limits.max_seconds), step=0.5,
                                    label="Duration (s)")  # fmt: skip
                steps = gr.Slider(1, limits.max_steps, value=min(50, limits.max_steps), step=1, label="Steps")
                cfg = gr.Slider(0.0, limits.max_cfg, value=6.0, step=0.5, label="CFG scale")
                sampler = gr.Dropdown(list(SAMPLER_NAMES), value="dpmpp-3m-sde", label="Sampler")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed")
                    reroll = gr.Button("Random seed", size="sm")
                with gr.Accordion("Init audio (audio-to-audio)", open=False):
                    init_audio = gr.Audio(sources=["upload"], type="filepath", label="Init audio")
                    init_noise = gr.Slider(0.5, 100.0, value=1.0, label="Init noise level (sigma)")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                audio = gr.Audio(type="filepath", label="Audio", interactive=False, elem_id="output-audio")
                spectrogram = gr.Image(type="filepath", label="Spectrogram", interactive=False)
                files = gr.File(file_count="multiple", label="Download (WAV, FLAC)", interactive=False,
                                elem_id="downloads")  # fmt: skip
                settings = gr.JSON(label="Settings used")
                command = gr.Code(label="Same result from the command line", language="shell", interactive=False,
                                  lines=2, max_lines=4, wrap_lines=True)  # fmt: skip
        reroll.click(lambda: random.randrange(2**31), outputs=seed, queue=False, api_name=False)
        button.click(generate, inputs=[model, prompt, negative, seconds, steps, cfg, sampler, seed, init_audio,
                                       init_noise], outputs=[audio, spectrogram, files, settings, command, status],
                     api_name=API_NAME.lstrip("/"), concurrency_limit=limits.concurrency)  # fmt: skip
    app.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    return app


def launch(app, service: WebService, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> str:
    """Start the server (blocking unless ``block`` is False); returns its local URL."""
    gr = _gradio(service)
    # System fonts: the default theme would fetch Google Fonts, which an offline workstation cannot reach.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    _, url, _ = app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
                           max_file_size=f"{service.limits.max_upload_mb:g}mb", theme=theme,
                           footer_links=["api"], ssr_mode=False, show_error=True)  # fmt: skip
    return url
