"""The export backends (``--backend onnx`` / ``openvino``): the YOLO network exported once to
ONNX and run by ONNX Runtime or OpenVINO instead of PyTorch.

What is exported is the network ``YOLO.predict`` itself runs (the fused model Ultralytics'
predictor loaded), wrapped to return the raw head output AND the three neck maps the features
are pooled from::

    images (B, 3, H, W) float32 in [0, 1], letterboxed  ->  preds (B, 4 + classes, anchors),
                                                            P3 (B, 64, H/8, W/8), P4 (B, 128, H/16, W/16),
                                                            P5 (B, 256, H/32, W/32)

Batch, height and width are dynamic, so the graph is fed the very tensor the PyTorch path
makes (Ultralytics' own letterbox, ``auto=True`` rectangles included) and its output goes
through Ultralytics' own NMS and ``scale_boxes``, then the same pooling code: only the
arithmetic of the runtime differs (see ``perception.Perception.detect``).

The ``.onnx`` file is built on first use (a log line says so), written atomically and cached
under ``$CAPTIONER_EXPORTS`` (default ``~/.cache/captioner/exports``), keyed by the weights'
sha256, the feature layers and the opset; the input size is not part of the key, since the
graph takes any. Nothing is downloaded: the export needs only torch and the ``onnx`` package.

ONNX Runtime computes in float32 (detections and features within float rounding of PyTorch's).
OpenVINO compiles the graph for each input shape it is given (about 0.2 s; cached on disk for the
next run), at the CPU's fastest precision: bfloat16 on CPUs that have it (AVX512-BF16, AMX), float32
elsewhere; bf16 shifts boxes by a fraction of a pixel and features by ~1e-2 (README, Performance).

ONNX Runtime runs a batch of frames (offline files) side by side, one single-threaded session per
core, not as one batched inference: this small network leaves cores idle between its layers when they
share one frame. On 2 cores a pair of frames took 22.1 ms a frame that way against 24.8 ms one after
another (384x640, AVX512-BF16 EPYC), and a whole captioning run 0.83-0.88x the time (benchmarks/run.py).
OpenVINO's own threading does better: two streams of one frame each ran 12.4 against 13.1 ms a frame
but whole runs no faster (0.95-1.10x, 190 MB more memory), so it takes a batch as one inference.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ModelError
from .fileio import atomic_output

log = logging.getLogger(__name__)

EXPORTS_ENV = "CAPTIONER_EXPORTS"
OPSET = 17
OUTPUT_NAMES = ("preds", "p3", "p4", "p5")
RUNTIME_PACKAGES = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino"),
                    "openvino-int8": ("openvino", "int8")}  # backend -> (module, extra)
INT8_BACKEND = "openvino-int8"
MAX_STREAMS = 8  # ONNX Runtime: frames of a batch run at once at most (one core each)
CALIBRATION_ENV = "CAPTIONER_CALIBRATION"  # a folder of videos (or one video) to calibrate the int8 network on
CALIBRATION_FRAMES = 300  # frames sampled evenly over the calibration videos
CALIBRATION_IMGSZ = 640  # letterboxed like captioner's default input (rectangles, stride 32)
INT8_SCHEME = "headfp"  # what is quantised (part of the cache key): the backbone and neck; the head stays float
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def default_export_dir() -> Path:
    return Path(os.environ.get(EXPORTS_ENV) or Path.home() / ".cache" / "captioner" / "exports")


def check_runtime(backend: str) -> None:
    """``ModelError`` saying what to install where ``backend``'s runtime (or ``onnx``) is missing."""
    import importlib.util

    module, extra = RUNTIME_PACKAGES[backend]
    missing = [name for name in (module, "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(f"--backend {backend} needs {' and '.join(missing)}: pip install 'captioner[{extra}]' "
                         f"(or use --backend torch)")


def export_path(weights_name: str, weights_sha256: str, feature_layers: Sequence[int],
                directory: str | os.PathLike | None = None) -> Path:
    layers = "-".join(str(i) for i in feature_layers)
    return Path(directory or default_export_dir()) / f"{Path(weights_name).stem}-{weights_sha256[:16]}-l{layers}-opset{OPSET}.onnx"


def _neck_outputs_module(network, feature_layers: Sequence[int]):
    import torch

    class NeckOutputs(torch.nn.Module):
        """A DetectionModel's forward pass that also returns the outputs of ``feature_layers``."""

        def __init__(self):
            super().__init__()
            self.network, self.keep = network, tuple(feature_layers)

        def forward(self, x):
            saved = []
            for m in self.network.model:
                if m.f != -1:  # the layer reads earlier outputs
                    x = saved[m.f] if isinstance(m.f, int) else [x if j == -1 else saved[j] for j in m.f]
                x = m(x)
                saved.append(x if (m.i in self.network.save or m.i in self.keep) else None)
            preds = x[0] if isinstance(x, (list, tuple)) else x
            return (preds, *(saved[i] for i in self.keep))

    return NeckOutputs()


def export_onnx(network, feature_layers: Sequence[int], weights_name: str, weights_sha256: str,
                directory: str | os.PathLike | None = None) -> Path:
    """The cached ``.onnx`` of ``network`` (a fused Ultralytics DetectionModel), built if absent."""
    import torch

    path = export_path(weights_name, weights_sha256, feature_layers, directory)
    if path.is_file():
        return path
    log.info("exporting the YOLO network to ONNX for the export backends (once): %s", path)
    network = copy.deepcopy(network).float().cpu().eval()
    for module in network.modules():  # Perception's feature hooks came along with the copy
        module._forward_hooks.clear()
    head = network.model[-1]
    head.dynamic = True  # anchors from the input's shape, not constants of the traced size
    wrapper = _neck_outputs_module(network, feature_layers).eval()
    example = torch.zeros(1, 3, 64, 96)
    dynamic = {"images": {0: "batch", 2: "height", 3: "width"}, "preds": {0: "batch", 2: "anchors"}}
    dynamic.update({name: {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} for name in OUTPUT_NAMES[1:]})
    try:
        with atomic_output(path) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
            torch.onnx.export(wrapper, (example,), str(tmp), input_names=["images"], output_names=list(OUTPUT_NAMES),
                              dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True, dynamo=False)
    except (ImportError, ModuleNotFoundError) as exc:
        raise ModelError(f"exporting YOLO to ONNX needs the onnx package ({exc}): pip install 'captioner[openvino]'") from exc
    return path


def parallel_streams(threads: int | None) -> int:
    """Frames of a batch ONNX Runtime runs at once, one core each (module docstring); at most ``MAX_STREAMS``."""
    return max(1, min(int(threads or os.cpu_count() or 1), MAX_STREAMS))


class OnnxRuntimeNetwork:
    """The exported graph in ONNX Runtime (CPU, float32). Call with a (B, 3, H, W) float32 array:
    one frame runs on every thread; B >= 2 frames run ``parallel_frames`` at a time, one
    single-threaded session each (module docstring)."""

    takes_letterboxed_bgr = False  # fed the float tensor Ultralytics' preprocess makes

    def __init__(self, path: Path, threads: int | None = None):
        self.path, self.threads = path, threads
        self.parallel_frames = parallel_streams(threads)
        self.session = self._session(threads)
        self._stream_sessions: list | None = None  # made on the first batch
        self._pool = None

    def _session(self, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        if len(images) == 1 or self.parallel_frames == 1:
            return self.session.run(list(OUTPUT_NAMES), {"images": images})
        if self._stream_sessions is None:
            from concurrent.futures import ThreadPoolExecutor

            per_stream = max(1, (self.threads or self.parallel_frames) // self.parallel_frames)
            self._stream_sessions = [self._session(per_stream) for _ in range(self.parallel_frames)]
            self._pool = ThreadPoolExecutor(self.parallel_frames, thread_name_prefix="onnxruntime-stream")
        sessions = self._stream_sessions

        def run(k: int) -> list[np.ndarray]:  # frames k, k + n, k + 2n, ... on session k
            return [sessions[k].run(list(OUTPUT_NAMES), {"images": images[i:i + 1]})
                    for i in range(k, len(images), len(sessions))]

        per_session = list(self._pool.map(run, range(min(len(sessions), len(images)))))
        frames = [per_session[i % len(sessions)][i // len(sessions)] for i in range(len(images))]
        return [np.concatenate([frame[k] for frame in frames]) for k in range(len(OUTPUT_NAMES))]


def with_preprocessing(model):
    """The graph taking what the letterbox makes, (B, H, W, 3) BGR uint8, and doing Ultralytics' own
    conversion in the graph (to float, BGR -> RGB, / 255, to NCHW): no torch tensors per frame."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    images = ppp.input("images")
    images.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    images.model().set_layout(ov.Layout("NCHW"))
    images.preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
    return ppp.build()


class OpenVinoNetwork:
    """The exported graph in OpenVINO (CPU), compiled for each input shape it is given (a video's
    letterboxed frames all have one): with the shape fixed, the network ran 8 % faster at imgsz 640
    and 17 % at 320 than the one dynamic-shape compile (int8: 1.4-1.8x), for a compile of 0.2 s
    (int8 0.8 s) per new shape, cached on disk for the next process (measured on an AVX512-BF16 EPYC)."""

    takes_letterboxed_bgr = True  # converts to the network's input itself (``with_preprocessing``)
    max_shapes = 4  # compiled shapes kept (least recently used dropped): a folder of mixed video sizes
    parallel_frames = 1  # a batch as one inference: two streams of one frame each were no faster (module docstring)

    def __init__(self, path: Path, threads: int | None = None):
        import openvino as ov

        self.core, self.path = ov.Core(), path
        # the compiled blob cached beside the graph: the next process loads it in a fraction of the compile time
        self.config = {"PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(path.parent / "openvino-cache")}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self._model = with_preprocessing(self.core.read_model(str(path)))
        self._requests: dict[tuple[int, ...], object] = {}  # input shape -> infer request, in order of use

    def _request_for(self, shape: tuple[int, ...]):
        request = self._requests.pop(shape, None)
        if request is None:
            model = self._model.clone()
            model.reshape({model.inputs[0]: list(shape)})
            request = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            while len(self._requests) >= self.max_shapes:
                self._requests.pop(next(iter(self._requests)))
        self._requests[shape] = request  # now the most recently used
        return request

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        """images: (B, H, W, 3) BGR uint8, letterboxed."""
        outputs = self._request_for(tuple(images.shape)).infer({0: images})
        return [outputs[i] for i in range(len(OUTPUT_NAMES))]


def calibration_videos() -> list[Path]:
    """What the int8 network is calibrated on: ``$CAPTIONER_CALIBRATION`` (a folder of videos or one
    video), else the real clips of ``../shared/data/videos`` beside a checkout (``$CAPTIONER_SHARED``),
    else the checkout's ``samples/``; sorted, so the same files give the same network."""
    here = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("CAPTIONER_SHARED") or here.parent / "shared")
    candidates = [Path(os.environ[CALIBRATION_ENV])] if os.environ.get(CALIBRATION_ENV) else \
        [shared / "data" / "videos", here / "samples"]
    for place in candidates:
        videos = [place] if place.is_file() else sorted(p for p in place.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES) \
            if place.is_dir() else []
        if videos:
            return videos
        if os.environ.get(CALIBRATION_ENV):
            raise ModelError(f"${CALIBRATION_ENV}={place}: no video files there to calibrate the int8 network on")
    raise ModelError(f"--backend {INT8_BACKEND} calibrates the network on frames of real videos the first time it "
                     f"runs, and found none: set ${CALIBRATION_ENV} to a folder of videos like the ones you caption")


def calibration_frames(videos: Sequence[Path], count: int = CALIBRATION_FRAMES, imgsz: int = CALIBRATION_IMGSZ) -> list[np.ndarray]:
    """``count`` frames spread evenly over ``videos`` (and over each one's length), letterboxed as
    captioner feeds the network: (1, H, W, 3) BGR uint8 each."""
    import cv2
    from ultralytics.data.augment import LetterBox

    letterbox = LetterBox((imgsz, imgsz), auto=True, stride=32)
    per_video = max(1, -(-count // len(videos)))
    frames = []
    for video in videos:
        capture = cv2.VideoCapture(str(video))
        try:
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            for k in range(per_video if total > 0 else 0):
                capture.set(cv2.CAP_PROP_POS_FRAMES, int((k + 0.5) * total / per_video))
                ok, image = capture.read()
                if ok and image is not None:
                    frames.append(letterbox(image=image)[None])
        finally:
            capture.release()
    if not frames:
        raise ModelError(f"no frame could be read from the calibration videos ({videos[0].parent})")
    step = max(1, len(frames) // count)
    return frames[::step][:count]


def int8_key(videos: Sequence[Path] | None = None) -> str:
    """What makes one int8 network differ from another built from the same float graph: the
    quantisation scheme and the calibration set (names and sizes of its videos, frame count)."""
    import hashlib

    videos = calibration_videos() if videos is None else videos
    key = hashlib.sha256("\n".join(f"{v.name}:{v.stat().st_size}" for v in videos).encode()).hexdigest()[:12]
    return f"{INT8_SCHEME}-cal{key}-{CALIBRATION_FRAMES}"


def int8_path(onnx_path: Path, videos: Sequence[Path]) -> Path:
    """The cached int8 IR folder, keyed by the float graph and ``int8_key``."""
    return onnx_path.with_name(f"{onnx_path.stem}-int8-{int8_key(videos)}") / "model.xml"


def export_int8(onnx_path: Path) -> Path:
    """The int8 OpenVINO IR of the exported graph, built once (post-training quantisation with
    NNCF, the MIXED preset as in Ultralytics' own ``int8=True`` OpenVINO export; the detection
    head kept in float) and cached beside it."""
    videos = calibration_videos()
    path = int8_path(onnx_path, videos)
    if path.is_file():
        return path
    try:
        import nncf
    except ImportError as exc:
        raise ModelError(f"--backend {INT8_BACKEND} builds its network with NNCF the first time ({exc}): "
                         f"pip install 'captioner[int8]'") from exc
    import shutil
    import tempfile

    import openvino as ov

    frames = calibration_frames(videos)
    log.info("quantising the YOLO network to int8 for --backend %s (once): %d frames of %d videos in %s -> %s",
             INT8_BACKEND, len(frames), len(videos), videos[0].parent, path.parent)
    model = ov.Core().read_model(str(onnx_path))
    sigmoids = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Sigmoid"]
    head = sigmoids[-1].rsplit("/", 1)[0]  # the last Sigmoid is the head's class scores: "/model.23/Sigmoid"
    # the whole detection head stays float (Ultralytics' int8 export with int8_detect=False does the same):
    # with its class convs in int8 too, a clip of people in a field was captioned "a plane is flying" (measured)
    keep_float = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name().startswith(f"{head}/")]

    def to_input(frame: np.ndarray) -> np.ndarray:  # what the float graph takes: RGB, NCHW, [0, 1]
        return np.ascontiguousarray(frame[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0

    quantised = nncf.quantize(model, nncf.Dataset(frames, to_input), subset_size=len(frames),
                              preset=nncf.QuantizationPreset.MIXED,
                              ignored_scope=nncf.IgnoredScope(names=keep_float, validate=False))
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".int8-", dir=path.parent.parent))
    try:  # written in a staging folder, then renamed: a crash never leaves half an IR behind
        ov.save_model(quantised, str(staging / path.name), compress_to_fp16=False)
        try:
            staging.chmod(0o755)
            staging.rename(path.parent)
        except OSError:  # another process built it meanwhile
            if not path.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def load_network(backend: str, path: Path, threads: int | None = None):
    check_runtime(backend)
    if backend == INT8_BACKEND:
        path = export_int8(path)
        log.warning("--backend %s is experimental: its captions were measured less truthful than the float network's "
                    "(more objects named that are not there; README, Performance); use openvino for the same speed "
                    "class with float arithmetic", INT8_BACKEND)
    return (OnnxRuntimeNetwork if backend == "onnx" else OpenVinoNetwork)(path, threads)
