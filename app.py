"""captioner web app (Gradio 6): upload a video, caption a webcam live, caption a batch, search a library.

    python app.py                              # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080 --auth user:secret --max-upload-mb 200 --max-video-sec 300
    python app.py --library out/               # + search the caption library of `captioner batch ... -o out`

The models load once at start-up: one pipeline for uploads and batches (``--imgsz``, default
640) and one at ``--live-imgsz`` (default 320) for the live webcam tab. The page itself is built
by ``captioner.webapp.create_app``, which tests call with models they have already loaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from captioner.errors import CaptionerError
from captioner.library import LIBRARY_NAME
from captioner.options import BACKENDS, CaptionOptions
from captioner.webapp import DEFAULT_SAMPLES_DIR, AppConfig, create_app, launch

log = logging.getLogger("captioner.app")


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("--auth must be USER:PASSWORD")
    return user, password


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 = every interface)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public *.gradio.live link")
    p.add_argument("--auth", type=parse_auth, default=None, metavar="USER:PASSWORD", help="require this login")
    p.add_argument("--max-upload-mb", type=float, default=500, help="largest accepted upload")
    p.add_argument("--max-video-sec", type=float, default=600,
                   help="longest accepted video, in seconds (0: no limit)")
    p.add_argument("--concurrency", type=int, default=2, help="default number of events the queue runs at once")
    p.add_argument("--queue-size", type=int, default=16,
                   help="requests that may wait in the queue; more are answered 'busy, try again'")
    p.add_argument("--yolo-weights", default=None, help="YOLO weights (None: $CAPTIONER_YOLO_WEIGHTS, else weights/yolo*.pt)")
    p.add_argument("--weights", default=None, help="caption model (None: $CAPTIONER_WEIGHTS, else weights/captioner.pt)")
    p.add_argument("--imgsz", type=int, default=CaptionOptions.imgsz, help="YOLO input size for uploads and batches")
    p.add_argument("--live-imgsz", type=int, default=320, help="YOLO input size for the live webcam tab")
    p.add_argument("--device", default=None, help="torch device (None: cuda if available, else cpu)")
    p.add_argument("--backend", default=CaptionOptions.backend, choices=BACKENDS,
                   help="where YOLO runs: torch, or the exported network on the CPU: onnx or openvino (fastest)")
    p.add_argument("--window", type=float, default=CaptionOptions.window_sec, help="caption segment length in seconds")
    p.add_argument("--beam", type=int, default=CaptionOptions.beam_size, help="beam size (1 = greedy)")
    p.add_argument("--forecasts", type=int, default=CaptionOptions.forecast_lines, metavar="N",
                   help="'what happens next' lines per segment and live frame, most informative first (0 = all)")
    p.add_argument("--live-every", type=float, default=0.08, help="seconds between webcam frames sent to the server")
    p.add_argument("--live-time-limit", type=int, default=600, help="seconds one live stream may run")
    p.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES_DIR, help="folder of example clips")
    p.add_argument("--library", type=Path, default=None, metavar="OUTDIR",
                   help="a `captioner batch` output folder to search in the Library tab (its videos are served)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_upload_mb <= 0:
        parser.error("--max-upload-mb must be positive")
    if args.max_video_sec < 0:
        parser.error("--max-video-sec must be 0 (no limit) or positive")
    if args.queue_size < 1 or args.concurrency < 1:
        parser.error("--queue-size and --concurrency must be at least 1")
    if args.library is not None and not (args.library / LIBRARY_NAME).is_file():
        parser.error(f"--library {args.library}: no caption library there ({LIBRARY_NAME}); "
                     f"run `captioner batch ... -o {args.library}` or `captioner index {args.library}` first")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from captioner.pipeline import load_model

    try:
        options = CaptionOptions(imgsz=args.imgsz, device=args.device, backend=args.backend, window_sec=args.window,
                                 beam_size=args.beam, forecast_lines=args.forecasts)
        live_options = options.replace(imgsz=args.live_imgsz)
        log.info("loading models (imgsz %d for uploads, %d for live)", args.imgsz, args.live_imgsz)
        model = load_model(options, yolo_weights=args.yolo_weights, weights=args.weights)
        live_model = model if args.live_imgsz == args.imgsz else load_model(
            live_options, yolo_weights=args.yolo_weights, weights=args.weights)
    except CaptionerError as exc:
        print(f"captioner app: {exc}", file=sys.stderr)
        return 2
    config = AppConfig(live_stream_every_sec=args.live_every, live_time_limit_sec=args.live_time_limit,
                       samples_dir=args.samples, max_video_sec=args.max_video_sec or None,
                       upload_concurrency=args.concurrency, library_dir=args.library)
    demo = create_app(model, live_model, config=config)
    launch(demo, host=args.host, port=args.port, share=args.share, max_upload_mb=args.max_upload_mb,
           auth=args.auth, concurrency=args.concurrency, queue_size=args.queue_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
