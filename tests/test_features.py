import shutil
from pathlib import Path

import numpy as np

from captioner import cli
from captioner.features import FeatureCache, extract_features


def _same(a, b):
    assert len(a.frames) == len(b.frames)
    for fa, fb in zip(a.frames, b.frames):
        assert fa.t_sec == fb.t_sec and fa.frame_index == fb.frame_index
        np.testing.assert_array_equal(fa.detections.box_xyxy, fb.detections.box_xyxy)
        np.testing.assert_array_equal(fa.detections.track_id, fb.detections.track_id)
        np.testing.assert_array_equal(fa.detections.class_id, fb.detections.class_id)
        np.testing.assert_allclose(fa.embedding, fb.embedding, rtol=1e-3, atol=1e-3)  # float16 on disk


def test_cache_miss_then_hit_returns_the_same_features(perception, synthetic_clip, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    first, hit1 = extract_features(synthetic_clip, perception, analysis_fps=2.0, cache=cache)
    second, hit2 = extract_features(synthetic_clip, perception, analysis_fps=2.0, cache=cache)
    assert (hit1, hit2) == (False, True)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert not list((tmp_path / "cache").glob("*.tmp*"))  # nothing half-written left
    _same(first, second)
    assert second.info == first.info and second.settings["analysis_fps"] == 2.0
    assert [round(t, 3) for t in second.times_sec[:3]] == [0.0, 0.5, 1.0]
    # an identical copy elsewhere (same name, same content) hits the cache but reports its own path
    copy = tmp_path / "elsewhere" / Path(synthetic_clip).name
    copy.parent.mkdir()
    shutil.copy(synthetic_clip, copy)
    third, hit3 = extract_features(copy, perception, analysis_fps=2.0, cache=cache)
    assert hit3 and third.info.source == str(copy) and second.info.source == str(synthetic_clip)


def test_cache_key_covers_settings_content_and_weights(perception, synthetic_clip, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    extract_features(synthetic_clip, perception, analysis_fps=2.0, cache=cache)
    _, hit = extract_features(synthetic_clip, perception, analysis_fps=1.0, cache=cache)
    assert not hit  # other sampling rate
    changed = tmp_path / synthetic_clip.name
    shutil.copy(synthetic_clip, changed)
    with open(changed, "ab") as handle:
        handle.write(b"\0")  # same name, other content
    _, hit = extract_features(changed, perception, analysis_fps=2.0, cache=cache)
    assert not hit
    key_a = FeatureCache.key("v", "weights-a", {"fps": 2})
    assert key_a != FeatureCache.key("v", "weights-b", {"fps": 2}) and key_a == FeatureCache.key("v", "weights-a", {"fps": 2})


def test_damaged_cache_entry_is_recomputed(perception, synthetic_clip, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    extract_features(synthetic_clip, perception, analysis_fps=1.0, cache=cache)
    entry, = (tmp_path / "cache").glob("*.npz")
    entry.write_bytes(b"garbage")
    features, hit = extract_features(synthetic_clip, perception, analysis_fps=1.0, cache=cache)
    assert not hit and len(features.frames) == 6


def test_features_cli_reports_bad_files_and_reuses_cache(synthetic_clip, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(synthetic_clip, folder / "a.mp4")
    (folder / "broken.mp4").write_text("not a video")
    args = ["features", str(folder), "--out", str(tmp_path / "cache"), "--imgsz", "320", "--fps", "1"]
    assert cli.main(args) == 1  # broken.mp4 failed, a.mp4 still processed
    out, err = capsys.readouterr()
    assert "a.mp4: extracted 6 frames" in out and "broken.mp4" in err and "text file" in err
    (folder / "broken.mp4").unlink()
    assert cli.main(args) == 0
    assert "a.mp4: cached 6 frames" in capsys.readouterr().out


def test_cli_usage_errors_exit_2(capsys):
    assert cli.main(["features"]) == 2
    assert cli.main(["features", "x.mp4", "--fps", "abc"]) == 2
