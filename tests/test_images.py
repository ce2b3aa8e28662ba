"""Still images are first-class inputs: the CLI, the Python API, the feature cache and the web app."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from captioner import cli
from captioner.errors import VideoError
from captioner.features import FeatureCache, extract_features


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from captioner.training.synthetic import asset

    folder = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(folder / "bus.jpg"), asset("bus.jpg"))
    cv2.imwrite(str(folder / "two men.png"), asset("zidane.jpg"))
    (folder / "broken.jpg").write_bytes(asset_bytes := (folder / "bus.jpg").read_bytes()[:3000])
    assert len(asset_bytes) == 3000
    return folder


def test_caption_an_image_file_and_an_array(model, photos):
    result = model.caption(photos / "bus.jpg")
    assert len(result.segments) == 1
    seg = result.segments[0]
    assert (seg.start, seg.end) == (0.0, 0.0) and seg.caption and seg.evidence.frame_times_sec == [0.0]
    assert {"bus", "person"} <= set(seg.evidence.classes)
    assert result.video.is_image and (result.video.width, result.video.height) == (810, 1080)
    same = model.caption(cv2.imread(str(photos / "bus.jpg")))
    assert same.segments[0].caption == seg.caption


def test_cli_captions_a_folder_of_images(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main([str(photos), "-o", str(out), "--imgsz", "320", "--annotate", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "broken.jpg" in err and "cannot be read as an image" in err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bus.annotated.jpg", "bus.json", "bus.tsv", "bus.txt",
                     "two men.annotated.jpg", "two men.json", "two men.tsv", "two men.txt"]  # no srt/vtt for a photo
    data = json.loads((out / "bus.json").read_text())
    assert data["segments"][0]["start"] == data["segments"][0]["end"] == 0.0
    assert data["video"]["fps"] == 0 and data["video"]["duration_sec"] == 0
    assert (out / "bus.txt").read_text().strip() == data["segments"][0]["caption"]
    assert cv2.imread(str(out / "bus.annotated.jpg")).shape == (1080, 810, 3)
    assert cli.main([str(photos / "bus.jpg"), "-o", str(out), "-f", "srt", "--imgsz", "320", "--quiet"]) == 1
    assert "no timeline" in capsys.readouterr().err


def test_feature_cache_holds_images(perception, photos, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    first, hit1 = extract_features(photos / "bus.jpg", perception, cache=cache)
    second, hit2 = extract_features(photos / "bus.jpg", perception, cache=cache)
    assert (hit1, hit2) == (False, True) and len(second.frames) == 1 and second.info.is_image
    np.testing.assert_array_equal(first.frames[0].detections.class_id, second.frames[0].detections.class_id)
    with pytest.raises(VideoError, match="broken.jpg: cannot be read as an image"):
        extract_features(photos / "broken.jpg", perception)


def test_web_app_captions_an_image(model, photos, tmp_path):
    from captioner.webapp import AppConfig, CaptionApp

    app = CaptionApp(model, config=AppConfig(work_dir=tmp_path / "work", samples_dir=None))
    annotated, rows, files, summary = app.caption_image(str(photos / "bus.jpg"))
    assert Path(annotated).name == "bus.annotated.jpg" and len(rows) == 1 and rows[0][2]
    assert sorted(Path(f).suffix for f in files) == [".json", ".txt"] and "810x1080" in summary
    import gradio as gr

    with pytest.raises(gr.Error, match="broken.jpg"):
        app.caption_image(str(photos / "broken.jpg"))
    with pytest.raises(gr.Error, match="not an image"):
        app.caption_image(str(photos.parent / "clip.mp4"))
