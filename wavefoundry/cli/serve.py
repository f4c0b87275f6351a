"""``wavefoundry serve``: a local web page (Gradio) for text-to-audio generation, and the same function as an API.

    wavefoundry serve                                   # models/t2a-tiny on http://127.0.0.1:7860
    wavefoundry serve --model models/t2a-tiny --model runs/t2a/export --port 8000
    wavefoundry serve --host 0.0.0.0 --queue-size 4     # other machines may connect: only on a trusted network

The server binds to 127.0.0.1 unless ``--host`` says otherwise. Every request is bounded (prompt length, duration,
steps, CFG scale, upload size and length); at most ``--concurrency`` generations run at once and ``--queue-size``
wait, and a request beyond that is refused with a clear message. Outputs live in a temporary folder that is removed
when the server stops. Scripts: ``gradio_client.Client(url).predict(..., api_name="/generate")`` (docs/web.md).
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

DEFAULT_MODEL = Path("models/t2a-tiny")


def register(sub: argparse._SubParsersAction) -> None:
    from wavefoundry.web.service import WebLimits

    d = WebLimits()
    p = sub.add_parser("serve", help="local web UI and generation API (Gradio)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", type=Path, action="append", default=None,
                   help=f"a text-to-audio model directory; repeat for several (default {DEFAULT_MODEL})")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds, help=f"longest clip (default {d.max_seconds:g})")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help=f"most sampler steps (default {d.max_steps})")
    p.add_argument("--concurrency", type=int, default=d.concurrency,
                   help=f"generations running at once (default {d.concurrency})")  # fmt: skip
    p.add_argument("--queue-size", type=int, default=d.queue_size,
                   help=f"requests waiting at most; more are refused (default {d.queue_size})")  # fmt: skip
    p.set_defaults(func=run)


def model_names(paths: list[Path]) -> dict[str, Path]:
    """Display name (the folder's name, made unique with -2, -3, ...) -> path."""
    names: dict[str, Path] = {}
    for path in paths:
        name, k = path.resolve().name or "model", 2
        while name in names:
            name, k = f"{path.resolve().name}-{k}", k + 1
        names[name] = path
    return names


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from wavefoundry.web.app import build_app, launch
    from wavefoundry.web.service import RequestError, WebLimits, WebService

    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own health checks, one line each
    limits = WebLimits(max_seconds=args.max_seconds, max_steps=args.max_steps, concurrency=args.concurrency,
                       queue_size=args.queue_size)  # fmt: skip
    paths = args.model or [DEFAULT_MODEL]
    service = WebService(model_names(paths), limits)
    try:
        for name in service.models:  # load now so a broken model is reported at start; the page still serves
            try:
                service.pipeline(name)
            except RequestError as exc:
                print(f"warning: {exc}")
        app = build_app(service)
        # SIGTERM stops like Ctrl+C, so the outputs folder is removed either way.
        signal.signal(signal.SIGTERM, _interrupt)
        print(f"outputs in {service.store.root} (removed when the server stops)")
        print(f"serving {', '.join(service.models)} on http://{args.host}:{args.port} (Ctrl+C stops)")
        launch(app, service, host=args.host, port=args.port)
    finally:
        service.close()
    return 0
