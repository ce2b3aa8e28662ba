import subprocess
import wave

import cv2
import numpy as np
import pytest

from captioner.errors import OptionsError, VideoError
from captioner.training.synthetic import make_clip
from captioner.video import FrameSampler, VideoSource, probe, sample_frames


def test_probe_reports_fps_count_duration_size(synthetic_clip):
    info = probe(synthetic_clip)
    assert info.fps == pytest.approx(10.0)
    assert info.frame_count == 60
    assert info.duration_sec == pytest.approx(6.0)
    assert (info.width, info.height) == (640, 360)
    assert not info.is_live


def test_samples_at_target_rate_with_true_timestamps(synthetic_clip):
    frames = list(sample_frames(synthetic_clip, target_fps=4.0))
    times = np.array([f.t_sec for f in frames])
    # 6 s at 4 fps; each time is the source frame's own time (index / 10 fps)
    assert len(frames) == 24
    assert np.allclose(times, [f.index / 10.0 for f in frames], atol=1e-6)
    assert np.all(np.diff(times) > 0)
    assert np.diff(times).mean() == pytest.approx(0.25, abs=0.02)
    assert frames[0].image_bgr.shape == (360, 640, 3) and frames[0].image_bgr.dtype == np.uint8


def test_target_above_source_rate_keeps_every_frame(tmp_path):
    clip = make_clip(tmp_path / "slow.mp4", duration_sec=5, fps=1.0, width=320, height=180)
    frames = list(sample_frames(clip, target_fps=4.0))
    assert [round(f.t_sec, 3) for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_every_frame_when_no_target(synthetic_clip):
    assert len(list(sample_frames(synthetic_clip, target_fps=None))) == 60


def test_variable_frame_rate_uses_container_timestamps(tmp_path, ffmpeg_exe):
    # 10 frames at 10 fps, then 6 frames at 2 fps: t = 0.0 .. 0.9, then 1.0, 1.5, ..., 3.5
    src = make_clip(tmp_path / "cfr.mp4", duration_sec=1.6, fps=10.0, width=320, height=180)
    vfr = tmp_path / "vfr.mp4"
    expr = "if(lt(N,10),N/10,1+(N-10)/2)/TB"
    subprocess.run([ffmpeg_exe, "-loglevel", "error", "-y", "-i", str(src), "-vf", f"setpts='{expr}'",
                    "-fps_mode", "passthrough", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(vfr)], check=True)
    expected = [i / 10 for i in range(10)] + [1 + k / 2 for k in range(6)]
    every = [f.t_sec for f in sample_frames(vfr, target_fps=None)]
    assert np.allclose(every, expected, atol=0.011)
    sampled = [f.t_sec for f in sample_frames(vfr, target_fps=4.0)]
    # dense part sampled at 0.25 s steps, sparse part keeps every frame
    assert np.allclose(sampled, [0.0, 0.2, 0.5, 0.7, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5], atol=0.011)


class CountingCapture:
    """Wraps a cv2.VideoCapture to count grabs (demux+decode) and retrieves (convert+copy)."""

    def __init__(self, cap):
        self.cap, self.grabs, self.retrieves = cap, 0, 0

    def grab(self):
        self.grabs += 1
        return self.cap.grab()

    def retrieve(self):
        self.retrieves += 1
        return self.cap.retrieve()

    def __getattr__(self, name):
        return getattr(self.cap, name)


def test_skipped_frames_are_never_converted(synthetic_clip):
    with VideoSource(synthetic_clip) as video:
        sampler = FrameSampler(2.0, video.info.fps)
        counting = CountingCapture(video._cap)
        video._cap = counting
        every, kept = [], []
        for frame in video.frames(wants=sampler.wants):  # wants, then take, frame by frame
            every.append(frame)
            if sampler.take(frame.t_sec):
                kept.append(frame)
    assert len(every) == 60 and len(kept) == 12
    assert all(f.image_bgr is not None for f in kept) and sum(f.image_bgr is None for f in every) == 48
    assert counting.retrieves == len(kept)
    assert counting.grabs == 61  # every frame grabbed once, plus the final failing grab


@pytest.mark.parametrize("fps", [0, -1, float("nan"), 1000])
def test_absurd_fps_is_an_options_error(fps):
    with pytest.raises(OptionsError, match="fps"):
        FrameSampler(fps)


def test_sampler_takes_the_same_frames_with_or_without_the_source_rate():
    """A live stream does not know its rate; the gap between frames stands in for it."""
    times = [round(i / 29.97, 3) for i in range(300)]  # container times, rounded to the millisecond
    known, unknown = FrameSampler(4.0, 29.97), FrameSampler(4.0)
    assert [known.take(t) for t in times] == [unknown.take(t) for t in times]
    sampler = FrameSampler(4.0)
    taken = [t for t in times if sampler.take(t)]
    assert len(taken) == 40 and all(0.2 < b - a < 0.3 for a, b in zip(taken, taken[1:]))


def _bad_inputs(tmp_path):
    good_mp4 = make_clip(tmp_path / "good.mp4", duration_sec=3, fps=10, width=320, height=180)
    good_avi = make_clip(tmp_path / "good.avi", duration_sec=3, fps=10, width=320, height=180, fourcc="MJPG")
    files = {}
    files["missing"] = tmp_path / "missing.mp4"
    files["empty"] = tmp_path / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "notes.mp4"
    files["text"].write_text("this is not a video\n" * 50)
    files["random"] = tmp_path / "random.mp4"
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 40000, dtype=np.uint8).tobytes())
    data = good_mp4.read_bytes()
    files["truncated_mp4"] = tmp_path / "truncated.mp4"
    files["truncated_mp4"].write_bytes(data[: len(data) // 2])  # index (moov) lost
    data = good_avi.read_bytes()
    files["truncated_avi"] = tmp_path / "truncated.avi"
    files["truncated_avi"].write_bytes(data[: len(data) // 2])  # half the frames lost
    corrupt = bytearray(good_mp4.read_bytes())
    for i in range(2000, len(corrupt) - 2000, 7):
        corrupt[i] = (corrupt[i] * 31 + 7) % 256
    files["corrupt"] = tmp_path / "corrupt.mp4"
    files["corrupt"].write_bytes(bytes(corrupt))
    files["audio_only"] = tmp_path / "speech.wav"
    with wave.open(str(files["audio_only"]), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 8000)
    files["image"] = tmp_path / "still.jpg"
    cv2.imwrite(str(files["image"]), np.zeros((64, 64, 3), np.uint8))
    files["directory"] = tmp_path / "folder.mp4"
    files["directory"].mkdir()
    return files


EXPECTED_PROBLEM = {
    "missing": "not found", "empty": "empty", "text": "text file", "random": "cannot be opened",
    "truncated_mp4": "index (moov atom) is missing", "truncated_avi": "truncated", "corrupt": "corrupt",
    "audio_only": "audio-only", "image": "still image", "directory": "is a folder",
}


@pytest.mark.parametrize("case", sorted(EXPECTED_PROBLEM))
def test_bad_inputs_raise_video_error_naming_file_and_problem(tmp_path, case):
    path = _bad_inputs(tmp_path)[case]
    with pytest.raises(VideoError) as excinfo:
        for _ in sample_frames(path):
            pass
    message = str(excinfo.value)
    assert path.name in message
    assert EXPECTED_PROBLEM[case] in message


def test_missing_webcam_is_a_video_error():
    with pytest.raises(VideoError, match="webcam 97"):
        VideoSource(97)
