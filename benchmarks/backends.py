"""How much an export backend's output differs from the PyTorch backend's, on real clips.

For every analysed frame: the boxes (each torch box's best same-class IoU in the other
backend's frame), the confidence of matched boxes, and the cosine similarity of the embedding,
the grid cells and matched boxes' appearance; then whole captions: how many segments read the
same. Speed is not measured here (benchmarks/run.py does).

    python benchmarks/backends.py [--backends onnx openvino] [--imgsz 640] [--clips N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.run import DEFAULT_CLIPS, SHARED_VIDEOS  # noqa: E402


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def compare_frames(ref, other) -> dict:
    ious, conf, emb, cells, app, counts_equal = [], [], [], [], [], 0
    for a, b in zip(ref, other):
        emb.append(cosine(a.embedding, b.embedding))
        cells.append(cosine(a.cells, b.cells))
        da, db = a.detections, b.detections
        counts_equal += len(da) == len(db)
        if not len(da):
            continue
        if not len(db):
            ious += [0.0] * len(da)
            continue
        m = iou_matrix(da.box_xyxy, db.box_xyxy)
        m[da.class_id[:, None] != db.class_id[None, :]] = 0.0
        best = m.argmax(axis=1)
        best_iou = m[np.arange(len(da)), best]
        ious += list(best_iou)
        ok = best_iou >= 0.9  # the same object in both: compare its score and appearance
        conf += list(np.abs(da.confidence[ok] - db.confidence[best[ok]]))
        app += [cosine(x, y) for x, y in zip(da.appearance[ok], db.appearance[best[ok]])]
    ious = np.array(ious)
    return {"frames": len(ref), "same box count": f"{counts_equal}/{len(ref)}",
            "boxes matched (IoU>=0.9)": f"{np.mean(ious >= 0.9):.3f}" if len(ious) else "-",
            "median IoU": f"{np.median(ious):.4f}" if len(ious) else "-",
            "max conf diff (IoU>=0.9)": f"{max(conf, default=0):.4f}",
            "min cos embedding": f"{min(emb):.5f}", "min cos cells": f"{min(cells):.5f}",
            "median cos appearance (IoU>=0.9)": f"{np.median(app):.5f}" if app else "-"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["onnx", "openvino"])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--clips", type=int, default=len(DEFAULT_CLIPS))
    args = parser.parse_args()

    import captioner
    from captioner.features import extract_features

    clips = [str(SHARED_VIDEOS / name) for name in DEFAULT_CLIPS[: args.clips] if (SHARED_VIDEOS / name).is_file()]
    if not clips:
        raise SystemExit(f"no clips found in {SHARED_VIDEOS}")
    models = {b: captioner.load_model(imgsz=args.imgsz, backend=b) for b in ["torch", *args.backends]}
    frames = {b: [] for b in models}
    captions = {b: [] for b in models}
    for clip in clips:
        for backend, model in models.items():
            features, _ = extract_features(clip, model.perception, analysis_fps=model.analysis_fps)
            frames[backend] += features.frames
            captions[backend].append([(s.start, s.end, s.caption) for s in model.caption(clip).segments])
    print(f"{len(clips)} clips, imgsz {args.imgsz}; each backend against torch")
    for backend in args.backends:
        print(f"\n{backend}:")
        for key, value in compare_frames(frames["torch"], frames[backend]).items():
            print(f"  {key}: {value}")
        same_clips = sum(a == b for a, b in zip(captions["torch"], captions[backend]))
        segs = sum(len(c) for c in captions["torch"])
        same_segs = sum(len(set(a) & set(b)) for a, b in zip(captions["torch"], captions[backend]))
        print(f"  clips captioned identically: {same_clips}/{len(clips)}; segments identical: {same_segs}/{segs}")
        for clip, a, b in zip(clips, captions["torch"], captions[backend]):
            if a != b:
                print(f"    {Path(clip).name}: torch {[c for _, _, c in a]} | {backend} {[c for _, _, c in b]}")


if __name__ == "__main__":
    main()
