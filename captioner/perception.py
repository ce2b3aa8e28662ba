"""Stage 2: ONE YOLO forward pass per frame gives detections, track ids and features.

Detections come from Ultralytics' own predictor (set up once by ``YOLO.predict``, then its
letterbox, network and NMS steps called directly), so they are exactly what ``YOLO.predict``
gives. While that forward pass runs, forward hooks on chosen neck layers (P3, P4, P5) capture
their feature maps (an export backend's graph returns them as outputs, see ``export.py``); from
those same maps, with no second pass:

- ``embedding``: each map average-pooled, concatenated (the frame's appearance);
- ``cells``: the P5 map average-pooled to a 6 x 6 grid (where things are in the scene);
- ``Detections.appearance``: each box RoI-aligned on every map and averaged (what each object
  looks like: "a black dog", "a person in a red shirt").

Besides the network, each box's colours are read from its pixels (``colours.py``), so colour
words can be checked like class names.

Track ids come from an Ultralytics tracker (ByteTrack by default) that belongs to one stream
(``StreamTracker``): two streams processed alternately never mix ids. A track has one class:
the one with the most confidence over its life so far, so boxes, captions and forecasts never
call the same object a dog in one frame and a cow in the next.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .coco import COCO_CLASSES
from .colours import box_colours
from .errors import ModelError, OptionsError
from .export import INT8_BACKEND
from .fileio import file_sha256
from .model_files import YOLO_WEIGHTS_ENV, check_download_allowed, resolve_yolo_weights
from .options import CaptionOptions, check_device

log = logging.getLogger(__name__)

# YOLO11n / YOLOv8n neck outputs at strides 8, 16, 32 (the inputs of the Detect head).
DEFAULT_FEATURE_LAYERS: tuple[int, ...] = (16, 19, 22)
CELL_GRID = 6  # the last (P5) map pooled to CELL_GRID x CELL_GRID cells (a 3x3 model gets them averaged 2x2)
ROI_SIZE = 2  # RoIAlign output per box and map, then averaged


@dataclass
class Detections:
    """Objects found in one frame (a typed value, like supervision's ``Detections``).

    box_xyxy:   (N, 4) float32, source-frame pixels
    confidence: (N,)   float32 in [0, 1]
    class_id:   (N,)   int32 COCO class index (for a tracked box: its track's class)
    track_id:   (N,)   int32 stream-local track id, -1 where the tracker has not confirmed one
    appearance: (N, D) float32 RoI-pooled neck features of each box, or None (not computed)
    colours:    (N,)   uint16 bit set of the colours each box shows (``colours.py``), or None
    """

    box_xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    track_id: np.ndarray
    appearance: np.ndarray | None = None
    colours: np.ndarray | None = None

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.class_id)

    def __getitem__(self, index) -> "Detections":
        appearance = self.appearance[index] if self.appearance is not None else None
        colours = self.colours[index] if self.colours is not None else None
        return Detections(self.box_xyxy[index], self.confidence[index], self.class_id[index], self.track_id[index],
                          appearance, colours)

    @property
    def class_names(self) -> list[str]:
        return [COCO_CLASSES[int(c)] for c in self.class_id]

    @property
    def tracked(self) -> "Detections":
        """Only the detections that carry a confirmed track id."""
        return self[self.track_id >= 0]


@dataclass
class FrameFeatures:
    """What one forward pass says about one analysed frame.

    t_sec, frame_index: when it was in its source (a photo: 0.0, 0)
    detections: every box, with its track id (-1 where unconfirmed) and appearance
    embedding:  (D,) float32, the concatenated global-average-pooled ``feature_layers`` outputs
    cells:      (CELL_GRID ** 2, C_last) float32, the last feature layer pooled to a grid
                (row-major), or None where unknown (hand-made test frames)
    """

    t_sec: float
    frame_index: int
    detections: Detections
    embedding: np.ndarray
    cells: np.ndarray | None = None

    @property
    def tracks(self) -> Detections:
        """The detections that belong to a confirmed track."""
        return self.detections.tracked


@dataclass(frozen=True)
class BackboneInfo:
    """What a caption model must know about the YOLO it was trained on."""

    architecture: str  # e.g. "yolo11n.yaml"
    num_layers: int
    num_classes: int
    feature_layers: tuple[int, ...]
    feature_dims: tuple[int, ...]
    weights_name: str
    weights_sha256: str

    @property
    def embedding_dim(self) -> int:
        return int(sum(self.feature_dims))

    def layout(self) -> dict:
        """The part that must match for features to mean the same thing."""
        return {"architecture": self.architecture, "num_layers": self.num_layers, "num_classes": self.num_classes,
                "feature_layers": list(self.feature_layers), "feature_dims": list(self.feature_dims)}


def select_device(device: str | None = None, backend: str = "torch") -> str:
    """The torch device: ``None``/``"auto"`` picks the first CUDA GPU where there is one, else the
    CPU; the export backends always run on the CPU."""
    import torch

    check_device(device, backend)
    if backend != "torch":
        return "cpu"
    if device in (None, "", "auto"):
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if is_cuda(device) and not torch.cuda.is_available():
        raise OptionsError(f"device {device!r} asked for, but no CUDA GPU is available; use --device cpu")
    return str(device)


def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda") or str(device).isdigit()


class StreamTracker:
    """Tracker state for ONE stream. Create one per video / webcam session; never share."""

    def __init__(self, tracker_cfg: str = "bytetrack.yaml", frame_rate: float = 4.0, lost_track_sec: float = 2.0):
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        cfg = IterableSimpleNamespace(**YAML.load(check_yaml(tracker_cfg)))
        if cfg.tracker_type not in TRACKER_MAP:
            raise OptionsError(f"tracker {tracker_cfg!r}: unsupported tracker_type {cfg.tracker_type!r}")
        if getattr(cfg, "with_reid", False):
            cfg.with_reid = False  # re-id would need a second network; we stay at one pass
        # track_buffer counts frames; at a 4 fps analysis rate the 30-frame default would keep
        # a lost track for 7.5 s, so express it in seconds instead
        cfg.track_buffer = max(2, round(lost_track_sec * frame_rate))
        self._tracker = TRACKER_MAP[cfg.tracker_type](args=cfg)

        self._votes: dict[int, np.ndarray] = {}  # track id -> summed confidence per class
        self._last_seen: dict[int, int] = {}
        self._frames = 0
        self._forget_after = 10 * cfg.track_buffer  # frames; a track lost this long never comes back

    def assign(self, boxes, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(track ids, classes), each (N,) int32 aligned with the N detections of ``boxes``.
        Track id -1 = unconfirmed; a tracked box's class is its track's (most confidence so far)."""
        self._frames += 1
        track_id = np.full(len(boxes), -1, np.int32)
        class_id = boxes.cls.astype(np.int32).copy() if len(boxes) else np.zeros(0, np.int32)
        tracks = self._tracker.update(boxes, image_bgr)  # rows: x1 y1 x2 y2 id score cls det_index (ages lost tracks)
        if len(boxes) and len(tracks):
            track_id[tracks[:, -1].astype(int)] = tracks[:, 4].astype(np.int32)
        for k in np.flatnonzero(track_id >= 0):
            tid = int(track_id[k])
            votes = self._votes.setdefault(tid, np.zeros(len(COCO_CLASSES), np.float32))
            votes[class_id[k]] += float(boxes.conf[k])
            class_id[k] = int(np.argmax(votes))
            self._last_seen[tid] = self._frames
        for tid in [t for t, seen in self._last_seen.items() if self._frames - seen > self._forget_after]:
            del self._votes[tid], self._last_seen[tid]  # bounded memory however long a stream runs
        return track_id, class_id


class Perception:
    """A loaded YOLO with feature hooks. Load once; call ``detect`` per frame or batch.

    ``backend``: "torch" runs the network in PyTorch (on ``device``: a GPU when there is one,
    in half precision there); "onnx" / "openvino" run the same network exported once to ONNX
    (``export.py``) on the CPU. Every backend shares Ultralytics' preprocessing (letterbox), NMS
    and box scaling, and the pooling below; only the network's arithmetic differs.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        *,
        imgsz: int = CaptionOptions.imgsz,
        conf: float = CaptionOptions.conf,
        iou: float = 0.7,
        device: str | None = None,
        backend: str = CaptionOptions.backend,
        feature_layers: Sequence[int] = DEFAULT_FEATURE_LAYERS,
        tracker: str = "bytetrack.yaml",
    ):
        from ultralytics import YOLO

        CaptionOptions(imgsz=imgsz, conf=conf, device=device, backend=backend)  # the one place options are checked
        self.imgsz, self.conf, self.iou, self.tracker_cfg = imgsz, float(conf), float(iou), tracker
        self.backend = backend
        self.device = select_device(device, backend)
        self.half = self.backend == "torch" and is_cuda(self.device)  # fp16 on CUDA; the CPU stays fp32
        if backend != "torch":
            from .export import check_runtime

            check_runtime(backend)  # before the weights load: a missing package is the likelier error
        self.weights_path = resolve_yolo_weights(weights)
        check_download_allowed(self.weights_path)
        try:
            self.yolo = YOLO(self.weights_path)
        except Exception as exc:  # offline download failures, corrupt files, wrong format
            hint = "" if Path(self.weights_path).exists() else (
                f" (not found locally and could not be downloaded; set ${YOLO_WEIGHTS_ENV} or pass --yolo-weights PATH)")
            raise ModelError(f"YOLO weights {self.weights_path}: could not be loaded{hint}: {exc}") from exc
        if getattr(self.yolo, "task", "detect") != "detect":
            raise ModelError(f"YOLO weights {self.weights_path}: a '{self.yolo.task}' model; captioner needs a detection model")
        layers = self.yolo.model.model
        self.feature_layers = tuple(int(i) for i in feature_layers)
        if any(i < 0 or i >= len(layers) - 1 for i in self.feature_layers):
            raise OptionsError(f"feature layers {self.feature_layers} out of range for a {len(layers)}-layer model")
        self._captured: dict[int, object] = {}
        self._hooks = [layers[i].register_forward_hook(self._make_hook(i)) for i in self.feature_layers]
        self._backbone: BackboneInfo | None = None
        self._feature_dims: tuple[int, ...] | None = None
        self._weights_sha256: str | None = None
        self._network = None  # the export backends' runtime, loaded on first use
        self._runtime_threads: int | None = None  # the export runtime's threads: the cores torch had
        self.network_idle = threading.Event()  # cleared while the network runs (``decode_yields_to``)
        self.network_idle.set()
        self._predictor = None  # Ultralytics' predictor, set up by the first pass

    @property
    def decode_yields_to(self) -> threading.Event | None:
        """What a frame reader running ahead should wait for (``video.ReadAhead``): with an export
        backend the runtime's threads fill every core while the network runs, so decoding waits
        for its pauses; torch's pooling and LSTM use the cores between passes too (None)."""
        return None if self.backend == "torch" else self.network_idle

    def _make_hook(self, layer: int):
        def hook(_module, _inputs, output):
            self._captured[layer] = output.detach()  # (B, C, H, W); pooled right after the pass
        return hook

    @property
    def names(self) -> dict[int, str]:
        return self.yolo.names

    @property
    def weights_sha256(self) -> str:
        if self._weights_sha256 is None:
            self._weights_sha256 = file_sha256(self.weights_path) if Path(self.weights_path).exists() else ""
        return self._weights_sha256

    @property
    def backbone(self) -> BackboneInfo:
        if self._backbone is None:
            if self._feature_dims is None:
                self.detect([np.zeros((64, 64, 3), np.uint8)])  # one dummy pass tells the feature sizes
            yaml = getattr(self.yolo.model, "yaml", {}) or {}
            arch = Path(str(yaml.get("yaml_file", "") or "unknown")).name
            self._backbone = BackboneInfo(
                architecture=arch,
                num_layers=len(self.yolo.model.model),
                num_classes=len(self.yolo.names),
                feature_layers=self.feature_layers,
                feature_dims=self._feature_dims,
                weights_name=Path(self.weights_path).name,
                weights_sha256=self.weights_sha256,
            )
        return self._backbone

    def settings(self) -> dict:
        out = {"imgsz": self.imgsz, "conf": self.conf, "iou": self.iou, "feature_layers": list(self.feature_layers),
               "tracker": self.tracker_cfg, "backend": self.backend}
        if self.backend == INT8_BACKEND:  # which int8 network (a cache of its features is that network's)
            from .export import int8_key

            out["int8"] = int8_key()
        return out

    @property
    def frames_per_pass(self) -> int:
        """Frames one ``detect`` call should take offline: 8 on a GPU; on the CPU 1 with torch and
        OpenVINO (batches are no faster per frame there), and with ONNX Runtime one per core, run
        side by side (``export`` docstring). Loads the export runtime if needed."""
        if self.backend == "torch":
            return 8 if is_cuda(self.device) else 1
        return self._export_network(self._ready_predictor()).parallel_frames

    def new_tracker(self, frame_rate: float = 4.0) -> StreamTracker:
        return StreamTracker(self.tracker_cfg, frame_rate)

    def predict_args(self) -> dict:
        """Our settings as ``YOLO.predict`` arguments (half precision on CUDA)."""
        from ultralytics.cfg import DEFAULT_CFG_DICT

        args = dict(imgsz=self.imgsz, conf=self.conf, iou=self.iou, device=self.device, verbose=False)
        if self.half:  # Ultralytics renamed half=True to quantize=16
            args.update({"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True})
        return args

    def predict_results(self, images_bgr: list[np.ndarray]):
        """Plain ``YOLO.predict`` on a batch with our settings (the hooks fire during it)."""
        return self.yolo.predict(images_bgr, **self.predict_args())

    def _ready_predictor(self):
        """Ultralytics' predictor, set up (model loaded on the device, fused, warmed up) by one
        ``YOLO.predict`` with our settings; ``detect`` then calls its steps directly, skipping
        the per-call source and results set-up of ``predict``."""
        predictor = self.yolo.predictor
        if predictor is None or predictor is not self._predictor or \
                (predictor.args.imgsz, predictor.args.conf, predictor.args.iou) != (self.imgsz, self.conf, self.iou):
            import torch

            threads = torch.get_num_threads()
            self.predict_results([np.zeros((32, 32, 3), np.uint8)])
            # Ultralytics' CPU set-up sets torch to cpu_count - 1 threads (1 on 2 cores) for its training;
            # inference here keeps the threads the process had (all cores, or what a batch worker was given)
            if self.backend == "torch":
                torch.set_num_threads(threads)
            else:
                # an export runtime gets those cores; torch's small ops around it (letterbox, NMS, pooling,
                # LSTM, beam search) run on one thread: its OpenMP workers competing with OpenVINO's for
                # 2 cores made the network 27 % and the whole pipeline 60 % slower (measured, README)
                self._runtime_threads = self._runtime_threads or threads
                torch.set_num_threads(1)
            self._captured.clear()
            self._predictor = predictor = self.yolo.predictor
        return predictor

    def _export_network(self, predictor):
        if self._network is None:
            import torch

            from .export import export_onnx, load_network

            path = export_onnx(predictor.model.model, self.feature_layers, Path(self.weights_path).name,
                               self.weights_sha256)
            self._network = load_network(self.backend, path, threads=self._runtime_threads or torch.get_num_threads())
        return self._network

    def _infer(self, images_bgr: list[np.ndarray]):
        """Letterbox, network, NMS, boxes to source pixels: (input (B, 3, H, W), results, maps)."""
        import torch

        predictor = self._ready_predictor()
        with torch.inference_mode():
            if self.backend == "torch":
                batch = predictor.preprocess(images_bgr)
                self._captured.clear()
                preds = predictor.inference(batch)
                maps = [self._captured.pop(i) for i in self.feature_layers]
            else:
                network = self._export_network(predictor)
                if network.takes_letterboxed_bgr:  # OpenVINO converts the letterboxed uint8 frames in its graph
                    letterboxed = np.stack(predictor.pre_transform(images_bgr))  # (B, H, W, 3) BGR
                    batch = torch.zeros(()).expand(len(images_bgr), 3, *letterboxed.shape[1:3])  # only its shape is read
                    inputs = letterboxed
                else:
                    batch = predictor.preprocess(images_bgr)
                    inputs = batch.numpy()
                self.network_idle.clear()
                try:
                    outputs = network(inputs)
                finally:
                    self.network_idle.set()
                preds, *maps = (torch.from_numpy(x) for x in outputs)
            predictor.batch = ([""] * len(images_bgr), images_bgr, [""] * len(images_bgr))  # what postprocess reads
            results = predictor.postprocess(preds, batch, images_bgr)
        return batch, results, maps

    def detect(self, images_bgr: list[np.ndarray], tracker: StreamTracker | None = None, *,
               features: bool = True, times: Sequence[tuple[float, int]] | None = None) -> list[FrameFeatures]:
        """One forward pass over a batch of frames (in stream order) -> one ``FrameFeatures`` each,
        at ``times`` [(t_sec, frame_index)] (default: 0.0, 0, a photo's); the tracker sees the
        frames one by one, in order. ``features=False`` (boxes only, e.g. to draw a frame that
        is not analysed) skips the pooling: ``embedding`` and ``cells`` are then empty and
        ``appearance`` None."""
        if not images_bgr:
            return []
        import torch

        batch, results, maps = self._infer(images_bgr)
        # every image's boxes to the host in one copy
        counts = [len(r.boxes) for r in results]
        all_boxes = torch.cat([r.boxes.data for r in results]).cpu().numpy() if sum(counts) else None
        boxes = []
        for k, (result, n) in enumerate(zip(results, counts)):
            offset = sum(counts[:k])
            data = all_boxes[offset:offset + n] if n else np.zeros((0, 6), np.float32)
            boxes.append(type(result.boxes)(data, result.orig_shape))
        if features:
            embeddings, cells, appearance = self._pool(maps, boxes, batch.shape[2:])
        out = []
        times = times or [(0.0, 0)] * len(images_bgr)
        for b, (box, image) in enumerate(zip(boxes, images_bgr)):
            if tracker is not None:
                track_id, class_id = tracker.assign(box, image)
            else:
                track_id, class_id = np.full(len(box), -1, np.int32), box.cls.astype(np.int32)
            xyxy = box.xyxy.astype(np.float32)
            if features:
                offset = sum(counts[:b])
                detections = Detections(xyxy, box.conf.astype(np.float32), class_id, track_id,
                                        appearance[offset:offset + len(box)], box_colours(image, xyxy))
                out.append(FrameFeatures(*times[b], detections, embeddings[b], cells[b]))
            else:
                detections = Detections(xyxy, box.conf.astype(np.float32), class_id, track_id)
                out.append(FrameFeatures(*times[b], detections, np.zeros(0, np.float32), np.zeros((0, 0), np.float32)))
        return out

    def _pool(self, maps: list, boxes: list, input_hw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """From the neck maps of one pass: embeddings (B, D), cells (B, G * G, C_last) and the
        appearance (N, D) of every box of the batch, in order; each copied to the host once."""
        import torch
        from torchvision.ops import roi_align

        maps = [m.float() for m in maps]  # each (B, C_i, H_i, W_i)
        if self._feature_dims is None:
            self._feature_dims = tuple(int(m.shape[1]) for m in maps)
        embeddings = torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1).cpu().numpy()
        cells = torch.nn.functional.adaptive_avg_pool2d(maps[-1], CELL_GRID).flatten(2).transpose(1, 2).cpu().numpy()
        input_h, input_w = int(input_hw[0]), int(input_hw[1])
        rois = []
        for b, box in enumerate(boxes):
            if len(box):
                # source pixels -> letterboxed input pixels (the inverse of ultralytics' scale_boxes)
                h0, w0 = box.orig_shape
                gain = min(input_h / h0, input_w / w0)
                pad = torch.tensor([round((input_w - w0 * gain) / 2 - 0.1), round((input_h - h0 * gain) / 2 - 0.1)] * 2)
                xyxy = torch.from_numpy(box.xyxy.astype(np.float32))
                rois.append(torch.cat([torch.full((len(box), 1), float(b)), xyxy * gain + pad], dim=1))
        if rois:
            rois = torch.cat(rois).to(maps[0].device)
            appearance = torch.cat([
                roi_align(m, rois, ROI_SIZE, spatial_scale=m.shape[3] / input_w, sampling_ratio=2, aligned=True)
                .mean(dim=(2, 3)) for m in maps], dim=1).cpu().numpy()
        else:
            appearance = np.zeros((0, sum(self._feature_dims)), np.float32)
        return embeddings.astype(np.float32), cells.astype(np.float32), appearance.astype(np.float32)

    def close(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
