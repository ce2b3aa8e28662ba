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
OpenVINO runs each input shape as a static model (10-20 % faster than a dynamic one here),
compiled on first sight (about 0.6 s; cached on disk for the next run), at the CPU's fastest
precision: bfloat16 on CPUs that have it (AVX512-BF16, AMX), float32 elsewhere; bf16 shifts
boxes by a fraction of a pixel and features by ~1e-2 (README, Performance).
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ModelError
from .fileio import atomic_output

log = logging.getLogger(__name__)

EXPORTS_ENV = "CAPTIONER_EXPORTS"
OPSET = 17
OUTPUT_NAMES = ("preds", "p3", "p4", "p5")
RUNTIME_PACKAGES = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}  # backend -> (module, extra)
MAX_COMPILED_SHAPES = 4  # OpenVINO: static models kept compiled, one per input shape (a video has one)


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


class OnnxRuntimeNetwork:
    """The exported graph in ONNX Runtime (CPU, float32). Call with a (B, 3, H, W) float32 array."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        return self.session.run(list(OUTPUT_NAMES), {"images": images})


class OpenVinoNetwork:
    """The exported graph in OpenVINO (CPU), one static model per input shape, compiled on first sight."""

    def __init__(self, path: Path, threads: int | None = None):
        import openvino as ov

        self.core, self.path = ov.Core(), path
        # compiled blobs cached beside the graph: a shape seen before loads in a fraction of its compile time
        self.config = {"PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(path.parent / "openvino-cache")}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled: OrderedDict[tuple, object] = OrderedDict()
        self._model = self.core.read_model(str(path))

    def _for_shape(self, shape: tuple):
        compiled = self._compiled.get(shape)
        if compiled is None:
            model = self._model.clone()
            model.reshape({"images": list(shape)})
            compiled = self._compiled[shape] = self.core.compile_model(model, "CPU", self.config)
            while len(self._compiled) > MAX_COMPILED_SHAPES:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(shape)
        return compiled

    @property
    def precision(self) -> str:
        compiled = next(iter(self._compiled.values()), None) or self._for_shape((1, 3, 64, 64))
        return str(compiled.get_property("INFERENCE_PRECISION_HINT"))

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        outputs = self._for_shape(tuple(images.shape))(images)
        return [outputs[i] for i in range(len(OUTPUT_NAMES))]


def load_network(backend: str, path: Path, threads: int | None = None):
    check_runtime(backend)
    return (OnnxRuntimeNetwork if backend == "onnx" else OpenVinoNetwork)(path, threads)
