import numpy as np
import pytest

from captioner.errors import ModelError, OptionsError
from captioner.features import SourcePerception
from captioner.fileio import file_sha256
from captioner.model_files import DEFAULT_YOLO_NAME, SHIPPED_YOLO_NAME
from captioner.model_files import YOLO_WEIGHTS_ENV as WEIGHTS_ENV
from captioner.model_files import resolve_yolo_weights as resolve_weights
from captioner.perception import Perception
from captioner.training.synthetic import default_sprites, make_clip, render_frame
from captioner.video import sample_frames


@pytest.fixture(scope="module")
def clip_features(perception, synthetic_clip):
    stream = SourcePerception(perception, analysis_fps=4.0)
    return [stream.push(f.image_bgr, f.t_sec, f.index) for f in sample_frames(synthetic_clip, 4.0)]


def _track_centres(frames, class_name):
    """track id -> list of (t_sec, centre_x) for one class."""
    tracks = {}
    for f in frames:
        d = f.detections
        for box, name, tid in zip(d.box_xyxy, d.class_names, d.track_id):
            if name == class_name and tid >= 0:
                tracks.setdefault(int(tid), []).append((f.t_sec, float(box[0] + box[2]) / 2))
    return tracks


def test_finds_person_and_bus_in_every_frame(clip_features):
    assert len(clip_features) == 24
    for f in clip_features:
        names = set(f.detections.class_names)
        assert {"person", "bus"} <= names, (f.t_sec, names)


def test_boxes_follow_the_motion(clip_features):
    # the bus photo moves right; the photo of two men (right half of frame) moves left
    bus_tracks = _track_centres(clip_features, "bus")
    longest_bus = max(bus_tracks.values(), key=len)
    assert longest_bus[-1][1] - longest_bus[0][1] > 100
    people_right = [t for t in _track_centres(clip_features, "person").values() if t[0][1] > 400 and len(t) > 10]
    assert people_right and all(t[-1][1] - t[0][1] < -60 for t in people_right)


def test_track_ids_are_stable(clip_features):
    bus_tracks = _track_centres(clip_features, "bus")
    longest = max(bus_tracks.values(), key=len)
    assert len(longest) >= 0.9 * len(clip_features)  # one id for the bus nearly all the time
    # the most confident person keeps one id throughout
    person_tracks = _track_centres(clip_features, "person")
    assert max(len(t) for t in person_tracks.values()) >= 0.9 * len(clip_features)


def test_detections_equal_plain_yolo_predict(perception, clip_features, synthetic_clip):
    from ultralytics import YOLO

    plain = YOLO(perception.weights_path)  # a second, hook-free model
    frames = list(sample_frames(synthetic_clip, 4.0))
    for frame in frames[::6]:
        ours = perception.detect([frame.image_bgr])[0].detections
        settings = dict(imgsz=320, conf=perception.conf, iou=perception.iou, device="cpu", verbose=False)
        # exactly what YOLO.predict gives on the same model: the hooks change nothing
        same_model = perception.yolo.predict(frame.image_bgr, **settings)[0].boxes.cpu().numpy()
        np.testing.assert_array_equal(ours.box_xyxy, same_model.xyxy.astype(np.float32))
        np.testing.assert_array_equal(ours.confidence, same_model.conf.astype(np.float32))
        np.testing.assert_array_equal(ours.class_id, same_model.cls.astype(np.int32))
        # and what a separate plain model gives (float summation order may differ across instances)
        theirs = plain.predict(frame.image_bgr, **settings)[0].boxes.cpu().numpy()
        np.testing.assert_array_equal(ours.class_id, theirs.cls.astype(np.int32))
        np.testing.assert_allclose(ours.box_xyxy, theirs.xyxy, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(ours.confidence, theirs.conf, rtol=1e-5, atol=1e-5)


def test_embeddings_are_pooled_neck_features(perception, clip_features):
    dims = perception.backbone.feature_dims
    assert dims == (64, 128, 256)
    e = np.stack([f.embedding for f in clip_features])
    assert e.shape == (24, sum(dims)) and e.dtype == np.float32 and np.isfinite(e).all()
    assert not np.allclose(e[0], e[-1])  # the scene changed, so did the features
    # a hand-run forward pass of the same letterboxed input gives the same pooled P5 features
    import torch

    image = render_frame(default_sprites(), 0.0, 640, 360)
    embedding = perception.detect([image])[0].embedding
    predictor = perception.yolo.predictor
    batch = predictor.preprocess([image])
    outputs = {}
    hook = predictor.model.model.model[22].register_forward_hook(lambda m, i, o: outputs.setdefault("p5", o))
    try:
        with torch.no_grad():
            predictor.model(batch)
    finally:
        hook.remove()
    manual = outputs["p5"].float().mean(dim=(2, 3))[0].numpy()
    np.testing.assert_allclose(embedding[-256:], manual, rtol=1e-5, atol=1e-5)


def test_two_streams_processed_alternately_never_mix_ids(perception, synthetic_clip, tmp_path):
    other = make_clip(tmp_path / "other.mp4", duration_sec=3, fps=10, width=480, height=270,
                      sprites=[s for s in default_sprites(480, 270, 3.0)][::-1])
    a_frames = list(sample_frames(synthetic_clip, 4.0))[:10]
    b_frames = list(sample_frames(other, 4.0))[:10]

    def alone(frames):
        tracker = perception.new_tracker(4.0)
        return [perception.detect([f.image_bgr], tracker)[0].detections.track_id.tolist() for f in frames]

    expected_a, expected_b = alone(a_frames), alone(b_frames)
    tracker_a, tracker_b = perception.new_tracker(4.0), perception.new_tracker(4.0)
    got_a, got_b = [], []
    for fa, fb in zip(a_frames, b_frames):
        got_a.append(perception.detect([fa.image_bgr], tracker_a)[0].detections.track_id.tolist())
        got_b.append(perception.detect([fb.image_bgr], tracker_b)[0].detections.track_id.tolist())
    assert got_a == expected_a and got_b == expected_b


def test_weights_resolution_order(tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit.pt", tmp_path / "env.pt"
    explicit.write_bytes(b"x"), env.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(WEIGHTS_ENV, str(env))
    assert resolve_weights(explicit) == str(explicit)
    assert resolve_weights("yolo11n.pt") == "yolo11n.pt"  # an Ultralytics name: fetched where online
    assert resolve_weights(None) == str(env)
    monkeypatch.delenv(WEIGHTS_ENV)
    # then the shipped backbone in weights/, checked by content
    shipped = resolve_weights(None)
    assert shipped.endswith(f"weights/{SHIPPED_YOLO_NAME}") and file_sha256(shipped).startswith("3810b271")
    monkeypatch.setattr("captioner.model_files.SHIPPED_DIR", tmp_path / "nothing")
    assert resolve_weights(None) == DEFAULT_YOLO_NAME
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / SHIPPED_YOLO_NAME).write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ModelError, match="not the shipped file"):
        resolve_weights(None)


def test_default_never_downloads_offline(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("captioner.model_files.SHIPPED_DIR", tmp_path / "nothing")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(ModelError, match="YOLO_OFFLINE is set, so it is not downloaded"):
        Perception()


def test_missing_or_broken_weights_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="nope.pt: file not found"):
        resolve_weights(tmp_path / "nope.pt")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "gone.pt"))
    with pytest.raises(ModelError, match=WEIGHTS_ENV):
        resolve_weights(None)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="broken.pt: could not be loaded"):
        Perception(broken)


@pytest.mark.parametrize("kwargs, match", [({"imgsz": 10}, "image size"), ({"imgsz": 100000}, "image size"),
                                           ({"conf": 1.5}, "confidence"), ({"device": "tpu"}, "device")])
def test_absurd_options_are_rejected(kwargs, match):
    with pytest.raises(OptionsError, match=match):
        Perception(**kwargs)


def test_cells_and_box_appearance_come_from_the_same_pass(perception):
    """Grid cells and per-box appearance are pooled from the neck maps of the detection pass."""
    import torch
    from torchvision.ops import roi_align

    image = render_frame(default_sprites(), 1.0, 640, 360)
    seen = perception.detect([image])[0]
    dims = perception.backbone.feature_dims
    from captioner.perception import CELL_GRID

    assert seen.cells.shape == (CELL_GRID ** 2, dims[-1]) and seen.detections.appearance.shape == (len(seen.detections), sum(dims))
    predictor = perception.yolo.predictor
    batch = predictor.preprocess([image])
    maps = {}
    hooks = [predictor.model.model.model[i].register_forward_hook(lambda m, i, o, k=i: maps.setdefault(k, o.float()))
             for i in perception.feature_layers]
    try:
        with torch.no_grad():
            predictor.model(batch)
    finally:
        for h in hooks:
            h.remove()
    p5 = maps[perception.feature_layers[-1]]
    np.testing.assert_allclose(seen.cells, torch.nn.functional.adaptive_avg_pool2d(p5, CELL_GRID)[0].flatten(1).T.numpy(),
                               rtol=1e-4, atol=1e-4)
    # the first box, mapped into the letterboxed input the maps were computed on
    h, w = batch.shape[2:]
    gain = min(h / 360, w / 640)
    pad_x, pad_y = round((w - 640 * gain) / 2 - 0.1), round((h - 360 * gain) / 2 - 0.1)
    box = torch.from_numpy(seen.detections.box_xyxy[:1]) * gain + torch.tensor([pad_x, pad_y, pad_x, pad_y])
    rois = torch.cat([torch.zeros(1, 1), box], 1)
    manual = torch.cat([roi_align(maps[i], rois, 2, spatial_scale=maps[i].shape[3] / w, sampling_ratio=2, aligned=True)
                        .mean(dim=(2, 3)) for i in perception.feature_layers], 1)[0].numpy()
    np.testing.assert_allclose(seen.detections.appearance[0], manual, rtol=1e-4, atol=1e-4)


def test_a_track_keeps_one_class():
    """A box the detector calls a dog in most frames and a cow in some stays a dog: the track's
    class is the one with the most confidence over its life so far."""
    import torch
    from ultralytics.engine.results import Boxes

    from captioner.coco import CLASS_INDEX
    from captioner.perception import StreamTracker

    dog, cow = CLASS_INDEX["dog"], CLASS_INDEX["cow"]
    tracker = StreamTracker(frame_rate=4.0)
    image = np.zeros((360, 640, 3), np.uint8)
    classes = []
    for i, (cls, conf) in enumerate([(dog, 0.9), (dog, 0.85), (cow, 0.6), (dog, 0.8), (cow, 0.7), (cow, 0.5)]):
        x = 100 + 5 * i
        boxes = Boxes(torch.tensor([[x, 100, x + 120, 220, conf, cls]], dtype=torch.float32), (360, 640)).numpy()
        track_id, class_id = tracker.assign(boxes, image)
        if track_id[0] >= 0:
            classes.append(int(class_id[0]))
    assert len(classes) >= 4 and set(classes) == {dog}
