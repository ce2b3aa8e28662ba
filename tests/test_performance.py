"""The fast paths keep outputs the same: background decoding, batched YOLO offline, the export
backends (ONNX Runtime, OpenVINO) and the CUDA settings (checked without a GPU)."""

from __future__ import annotations

import importlib.util
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from captioner.errors import ModelError, OptionsError, VideoError
from captioner.options import CaptionOptions
from captioner.video import ReadAhead, SampledFrame, VideoSource, sample_frames


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "captioner-read-ahead" and t.is_alive()]


# ---- background decoding ------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [3, 0])  # 0: decoded in the caller's thread
def test_read_ahead_yields_what_frames_yields(synthetic_clip, depth):
    with VideoSource(synthetic_clip) as video:
        expected = [(f.index, f.t_sec, f.image_bgr) for f in sample_frames(synthetic_clip, 4.0)]
        with ReadAhead(video, 4.0, depth) as frames:
            got = list(frames)
        assert video.frames_decoded == len(got) == 60 and video.end_sec == pytest.approx(6.0)
    converted = [(f.index, f.t_sec, f.image_bgr) for f in got if f.image_bgr is not None]
    assert [(i, t) for i, t, _ in converted] == [(i, t) for i, t, _ in expected]  # only the sampled frames converted
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(converted, expected))
    assert not _readers()


class _FailingVideo:
    """Yields a few frames, then raises as a truncated file does."""

    info = SimpleNamespace(fps=10.0)

    def frames(self, wants=None):
        for i in range(5):
            yield SampledFrame(i, i / 10.0, np.zeros((4, 4, 3), np.uint8) if wants(i / 10.0) else None)
        raise VideoError("clip.mp4: truncated: decoding stopped after 5 of 40 frames (0.4s of 4.0s)")


def test_a_reader_error_is_raised_in_the_callers_thread_with_its_message():
    seen = []
    with pytest.raises(VideoError, match=r"^clip.mp4: truncated: decoding stopped after 5 of 40 frames"):
        with ReadAhead(_FailingVideo(), 4.0) as frames:
            for frame in frames:
                seen.append(frame.index)
    assert seen == [0, 1, 2, 3, 4]  # every frame before the error came through first
    assert not _readers()


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_no_reader_is_left_running_when_the_caller_stops(synthetic_clip, error):
    with pytest.raises(error):
        with VideoSource(synthetic_clip) as video, ReadAhead(video, 4.0, depth=1) as frames:
            for frame in frames:
                if frame.index == 3:
                    raise error()  # e.g. Ctrl-C while YOLO runs
    assert not _readers()


class _CountingVideo:
    """Sixty 4x4 frames at 10 fps; counts how many the reader has pulled."""

    info = SimpleNamespace(fps=10.0)

    def __init__(self):
        self.pulled = 0

    def frames(self, wants=None):
        for i in range(60):
            self.pulled += 1
            yield SampledFrame(i, i / 10.0, np.full((4, 4, 3), i, np.uint8) if wants(i / 10.0) else None)


def test_the_reader_decodes_in_the_networks_pauses(monkeypatch):
    """With an export runtime on every core the reader, once the caller has a frame waiting, only
    decodes on while the network is idle (or after a bounded wait): the frames are the same."""
    from captioner import video as video_module

    monkeypatch.setattr(video_module, "YIELD_WAIT_SEC", 30.0)  # never reached here: the event decides
    network_idle = threading.Event()  # the network is busy
    source = _CountingVideo()
    with ReadAhead(source, 4.0, depth=3, yield_to=network_idle) as frames:
        time.sleep(0.3)
        held_back = source.pulled
        network_idle.set()
        got = list(frames)
    assert held_back <= 2  # one converted frame queued, then it waited (the frame after it may have been pulled)
    assert [f.index for f in got] == list(range(60)) and source.pulled == 60
    # unbounded by the event: a network that never pauses only slows decoding down
    monkeypatch.setattr(video_module, "YIELD_WAIT_SEC", 0.001)
    with ReadAhead(_CountingVideo(), 4.0, depth=3, yield_to=threading.Event()) as frames:
        assert [f.index for f in frames] == list(range(60))
    assert not _readers()


def test_only_the_export_backends_make_decoding_wait():
    from captioner.perception import Perception

    torch_backend = Perception.__new__(Perception)
    torch_backend.backend, torch_backend.network_idle = "torch", threading.Event()
    assert torch_backend.decode_yields_to is None  # torch's own ops use the cores between passes
    exported = Perception.__new__(Perception)
    exported.backend, exported.network_idle = "openvino", threading.Event()
    assert exported.decode_yields_to is exported.network_idle


# ---- batched YOLO offline ---------------------------------------------------------------------

def test_batched_frames_caption_as_one_at_a_time(model, synthetic_clip):
    one = model.caption(synthetic_clip, keep_detections=True, frame_batch=1)
    batched = model.caption(synthetic_clip, keep_detections=True, frame_batch=4)
    assert [(s.start, s.end, s.caption) for s in one.segments] == [(s.start, s.end, s.caption) for s in batched.segments]
    assert len(one.frame_detections) == len(batched.frame_detections) == 24
    for (t_a, a), (t_b, b) in zip(one.frame_detections, batched.frame_detections):
        # the same detections, tracks and classes; a batched convolution may sum in another order,
        # so boxes and confidences agree to float rounding rather than bit for bit
        assert t_a == t_b
        np.testing.assert_array_equal(a.class_id, b.class_id)
        np.testing.assert_array_equal(a.track_id, b.track_id)
        np.testing.assert_allclose(a.box_xyxy, b.box_xyxy, atol=1e-2)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4)
        np.testing.assert_allclose(a.appearance, b.appearance, atol=1e-3)


def test_frame_batch_option():
    from captioner.pipeline import Captioner

    from captioner.perception import Perception

    def batch_for(device: str, frame_batch: int = 0, backend: str = "torch") -> int:
        perception = Perception.__new__(Perception)
        perception.device, perception.backend = device, backend
        # an export runtime that runs 2 frames at once (one per core), as on this 2-core machine
        perception._ready_predictor = lambda: None
        perception._export_network = lambda _predictor: SimpleNamespace(parallel_frames=2)
        fake = SimpleNamespace(options=CaptionOptions(frame_batch=frame_batch), perception=perception)
        return Captioner.frame_batch(fake)

    assert (batch_for("cpu"), batch_for("cuda:0"), batch_for("cpu", 4)) == (1, 8, 4)
    assert (batch_for("cpu", backend="onnx"), batch_for("cpu", 3, backend="onnx")) == (2, 3)
    for bad in (-1, 65, 2.5, True):
        with pytest.raises(OptionsError, match="frame batch"):
            CaptionOptions(frame_batch=bad)
        with pytest.raises(OptionsError, match="read-ahead"):
            CaptionOptions(read_ahead=bad)


# ---- CUDA, checked without a GPU --------------------------------------------------------------

def test_cuda_is_picked_when_present_and_runs_in_half_precision(monkeypatch):
    import torch

    from captioner.perception import Perception, select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(None) == select_device("auto") == "cuda:0" and select_device("cuda:1") == "cuda:1"
    assert select_device(None, backend="openvino") == "cpu"  # the export backends run on the CPU
    perception = Perception(imgsz=320, device="cuda")  # loads on the CPU; nothing runs here
    assert perception.half
    args = perception.predict_args()
    assert args["device"] == "cuda" and (args.get("quantize") == 16 or args.get("half") is True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device(None) == "cpu" and not Perception(imgsz=320, device="cpu").half
    with pytest.raises(OptionsError, match="no CUDA GPU"):
        select_device("cuda")


# ---- the export backends ----------------------------------------------------------------------

def test_backend_option_is_checked():
    assert CaptionOptions().backend == "torch" and CaptionOptions(backend="openvino").perception()["backend"] == "openvino"
    with pytest.raises(OptionsError, match="backend must be one of torch, onnx, openvino"):
        CaptionOptions(backend="tensorrt")
    with pytest.raises(OptionsError, match="runs on the CPU"):
        CaptionOptions(backend="onnx", device="cuda")


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


# The stated tolerances (README, Performance). ONNX Runtime computes in float32 like PyTorch;
# OpenVINO in bf16 where the CPU has it, which moves boxes, scores and features a little.
TOLERANCE = {
    "onnx": {"box_iou": 0.999, "conf": 1e-3, "embedding": 0.99999, "cells": 0.99999, "appearance": 0.9999, "matched": 1.0},
    "openvino": {"box_iou": 0.8, "conf": 0.05, "embedding": 0.9995, "cells": 0.999, "appearance": 0.97, "matched": 0.9},
    # int8 here is calibrated on 24 frames of the one generated clip (the shipped path: 300 frames of real clips)
    "openvino-int8": {"box_iou": 0.6, "conf": 0.2, "embedding": 0.97, "cells": 0.9, "appearance": 0.8, "matched": 0.75},
}


@pytest.mark.parametrize("backend, package", [("onnx", "onnxruntime"), ("openvino", "openvino"), ("openvino-int8", "nncf")])
def test_export_backend_matches_torch(perception, synthetic_clip, tmp_path_factory, monkeypatch, request, backend, package):
    if any(importlib.util.find_spec(p) is None for p in (package, "onnx", "openvino" if "openvino" in backend else package)):
        pytest.skip(f"--backend {backend} needs {package} and onnx (pip install 'captioner[{backend}]')")
    import torch

    from captioner import export
    from captioner.export import CALIBRATION_ENV, EXPORTS_ENV
    from captioner.perception import Perception

    # an export backend puts torch on one thread for its process (the runtime gets the cores): give
    # the tests after this one their threads back
    threads = torch.get_num_threads()
    request.addfinalizer(lambda: torch.set_num_threads(threads))

    exports = tmp_path_factory.getbasetemp() / "exports"  # one export for the whole run
    monkeypatch.setenv(EXPORTS_ENV, str(exports))
    monkeypatch.setenv(CALIBRATION_ENV, str(synthetic_clip))  # core tests never need ../shared
    monkeypatch.setattr(export, "CALIBRATION_FRAMES", 24)
    torch.set_num_threads(2)  # the cores the export runtime is given (the batch check below runs 2 frames at once)
    exported = Perception(imgsz=320, backend=backend)
    frames = [f.image_bgr for f in sample_frames(synthetic_clip, 4.0)][::4]
    limits, boxes, matched = TOLERANCE[backend], 0, 0
    for image in frames:
        ref, got = perception.detect([image])[0], exported.detect([image])[0]
        assert _cosine(ref.embedding, got.embedding) >= limits["embedding"]
        assert _cosine(ref.cells, got.cells) >= limits["cells"]
        a, b = ref.detections, got.detections
        boxes += len(a)
        if not len(a) or not len(b):
            continue
        iou = _iou(a.box_xyxy, b.box_xyxy)
        iou[a.class_id[:, None] != b.class_id[None, :]] = 0.0
        best = iou.argmax(axis=1)
        ok = iou[np.arange(len(a)), best] >= limits["box_iou"]
        matched += int(ok.sum())
        assert np.abs(a.confidence[ok] - b.confidence[best[ok]]).max(initial=0.0) <= limits["conf"]
        assert min((_cosine(x, y) for x, y in zip(a.appearance[ok], b.appearance[best[ok]])), default=1.0) \
            >= limits["appearance"]
    assert boxes and matched >= limits["matched"] * boxes
    assert exported.settings()["backend"] == backend
    # built once: another model finds the cached graph
    onnx_files = list(exports.glob("*.onnx")) + list(exports.glob("*-int8-*/model.xml"))
    assert len(onnx_files) == 1 + (backend == "openvino-int8")
    stamps = [f.stat().st_mtime_ns for f in onnx_files]
    Perception(imgsz=640, backend=backend).detect([frames[0]])
    assert [f.stat().st_mtime_ns for f in onnx_files] == stamps
    if backend != "onnx":  # OpenVINO compiles the graph for each input shape it is given, keeping the last few
        network = exported._network
        shapes = list(network._requests)
        assert shapes == [(1, *exported._predictor.pre_transform([frames[0]])[0].shape)]
        for height in [h for h in (64, 96, 128, 160, 224, 256) if h != shapes[0][1]][:5]:
            network(np.zeros((1, height, 320, 3), np.uint8))
        assert len(network._requests) == network.max_shapes and shapes[0] not in network._requests
        again = exported.detect([frames[0]])[0]
        assert np.allclose(again.embedding, exported.detect([frames[0]])[0].embedding)
    # ONNX Runtime runs a batch side by side, one frame per core (export docstring; 2 cores were given),
    # OpenVINO as one inference: either way the same as one frame at a time
    assert exported.frames_per_pass == exported._network.parallel_frames == (2 if backend == "onnx" else 1)
    for one_by_one, batched in zip([exported.detect([image])[0] for image in frames[:3]], exported.detect(frames[:3])):
        assert _cosine(one_by_one.embedding, batched.embedding) >= 0.9999
        assert _cosine(one_by_one.cells, batched.cells) >= 0.9999
        np.testing.assert_array_equal(one_by_one.detections.class_id, batched.detections.class_id)
        np.testing.assert_allclose(one_by_one.detections.box_xyxy, batched.detections.box_xyxy, atol=0.5)


def test_int8_calibration_needs_videos(tmp_path, monkeypatch):
    """Where no calibration video can be found, --backend openvino-int8 says what to set."""
    from captioner.export import CALIBRATION_ENV, calibration_videos

    monkeypatch.setenv(CALIBRATION_ENV, str(tmp_path))
    with pytest.raises(ModelError, match=f"{CALIBRATION_ENV}={tmp_path}: no video files"):
        calibration_videos()
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert calibration_videos() == [tmp_path / "clip.mp4"]
