"""Faults: a disk that fills up, a process killed mid-write, a damaged feature-cache entry, a
corrupt or foreign checkpoint, weights that would be downloaded. In every case: a clear message,
no partial output, and what was already finished stays intact.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from captioner import cli, fileio
from captioner.errors import ModelError
from captioner.features import FeatureCache, extract_features
from captioner.writers import parse_srt

REPO = Path(__file__).resolve().parents[1]
TEMP = ".tmp"


def hidden(folder: Path) -> list[str]:
    """Temp files (and anything hidden) in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


def intact_outputs(out: Path, stem: str, formats=("json", "srt", "vtt", "txt", "tsv")) -> dict:
    """The outputs of ``stem`` exist and parse; returns the JSON."""
    for ext in formats:
        assert (out / f"{stem}.{ext}").is_file(), f"{stem}.{ext} missing"
    assert parse_srt((out / f"{stem}.srt").read_text(encoding="utf-8"))
    return json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))


def cli_in_process(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(args)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    from captioner.training.synthetic import make_clip

    folder = tmp_path_factory.mktemp("fault-clips")
    make_clip(folder / "a.mp4", duration_sec=2.0, fps=10.0, width=320, height=180)
    make_clip(folder / "b.mp4", duration_sec=3.0, fps=10.0, width=320, height=180)
    return folder


# ------------------------------------------------------------------------------------------------
# a full disk


def test_disk_full_while_writing_outputs(clips, model, tmp_path, monkeypatch):
    """ENOSPC part-way through the second input's outputs (the third file of five, half written):
    one clear line for it, nothing of it left, the first input's outputs intact, exit 1."""
    monkeypatch.setattr(cli, "load", lambda args, options: model)
    real_write = fileio._write_staged
    calls = []

    def write(tmp: Path, content: str) -> None:
        calls.append(tmp.name)
        if tmp.name.startswith(".b.") and sum(c.startswith(".b.") for c in calls) == 3:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(content[: len(content) // 2])  # a partial file on disk...
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ...then the disk is full
        real_write(tmp, content)

    monkeypatch.setattr(fileio, "_write_staged", write)
    out = tmp_path / "out"
    code, stderr = cli_in_process([str(clips / "a.mp4"), str(clips / "b.mp4"), "-o", str(out), "--imgsz", "320",
                                   "--quiet"])
    assert code == 1
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "b.mp4: no space left on device" in lines[0] and "Traceback" not in stderr, stderr
    intact_outputs(out, "a")
    assert sorted(p.name for p in out.iterdir()) == [f"a.{ext}" for ext in ("json", "srt", "tsv", "txt", "vtt")]


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real, small tmpfs (root only); yields its mount point and unmounts it."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root (the simulated ENOSPC test covers the rest)")
    point = tmp_path / "disk"
    point.mkdir()

    def mount(size_kb: int) -> Path:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(point)],
                             capture_output=True, text=True)
        if out.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
        return point

    yield mount
    subprocess.run(["umount", str(point)], capture_output=True)


def test_a_real_full_disk(clips, tmp_path, tiny_disk, report):
    """On a tmpfs just big enough for the first input's outputs: the second input's annotated
    video cannot be finished; it is named with the reason, nothing of it is left, the first
    input's outputs are intact. Run as a fresh process, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["-f", "all", "--annotate", "--imgsz", "320", "--quiet"]
    probe = tmp_path / "probe"
    subprocess.run([sys.executable, "-m", "captioner", str(clips / "a.mp4"), "-o", str(probe), *args], env=env,
                   check=True, capture_output=True, timeout=300)
    needed_kb = sum(p.stat().st_size for p in probe.iterdir()) // 1024 + 4 * 5 + 24  # 4 KiB pages, some room
    disk = tiny_disk(needed_kb)
    result = subprocess.run([sys.executable, "-m", "captioner", str(clips / "a.mp4"), str(clips / "b.mp4"), "-o",
                             str(disk), *args], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    report("ENOSPC on a real tmpfs", f"tmpfs of {needed_kb} KiB; exit {result.returncode}; "
           f"{lines}; left on the disk: {sorted(p.name for p in disk.iterdir())}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {clips / 'b.mp4'}: ") and "No space left on device" in lines[0]
    assert sorted(p.name for p in disk.iterdir()) == sorted(p.name for p in probe.iterdir())  # a's, only a's
    intact_outputs(disk, "a")
    assert cv2.VideoCapture(str(disk / "a.annotated.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 20


# ------------------------------------------------------------------------------------------------
# kill -9


def _age(folder: Path, seconds: float = 60.0) -> None:
    """Make the temp files in ``folder`` look ``seconds`` old (instead of waiting STALE_TEMP_SEC)."""
    then = time.time() - seconds
    for name in hidden(folder):
        os.utime(folder / name, (then, then))


def test_kill_9_mid_write_leaves_no_partial_output(clips, tmp_path, report):
    """``kill -9`` a CLI run while it encodes the second input's annotated video: the first input's
    outputs are complete, the second has no output at all (a hidden temp file at most, which the
    next run removes), and a rerun finishes it."""
    from captioner.training.synthetic import make_clip

    long_clip = make_clip(tmp_path / "long.mp4", duration_sec=12.0, fps=25.0, width=640, height=360)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["-f", "all", "--annotate", "--imgsz", "320", "--quiet", "-o", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "captioner", str(clips / "a.mp4"), str(long_clip), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, killed_at = time.monotonic() + 240, None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [n for n in hidden(out) if n.startswith(".long.annotated.mp4.")]
            if temps and (out / temps[0]).stat().st_size > 0:  # mid-write: the encoder has written some of it
                proc.send_signal(signal.SIGKILL)
                killed_at = temps[0]
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert killed_at, "the run ended before the second video was being written"
    time.sleep(0.5)  # the orphaned encoder sees its input close and exits
    after_kill = sorted(p.name for p in out.iterdir())
    intact_outputs(out, "a")
    assert cv2.VideoCapture(str(out / "a.annotated.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 20
    assert not [n for n in after_kill if n.startswith("long.")], after_kill  # nothing final, nothing partial
    _age(out)
    rerun = subprocess.run([sys.executable, "-m", "captioner", str(long_clip), *args], env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    intact_outputs(out, "long")
    assert hidden(out) == [], hidden(out)  # the killed run's temp file was swept
    report("kill -9 mid-write", f"killed while writing {killed_at}; right after the kill: {after_kill}; "
           f"after a rerun: {sorted(p.name for p in out.iterdir())}")


def _die_mid_write(code: str, folder: Path) -> subprocess.CompletedProcess:
    """Run ``code`` (which starts a write that calls ``die()`` part-way) in a fresh process."""
    prelude = ("import os, signal, sys\n"
               "def die(path):\n"
               "    with open(path, 'wb') as h: h.write(b'half a file'); h.flush()\n"
               "    os.kill(os.getpid(), signal.SIGKILL)\n")
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=folder, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_kill_9_while_saving_a_checkpoint_or_a_cache_entry(tmp_path):
    """A checkpoint and a feature-cache entry are written through fileio.atomic_output: killed
    part-way, the target never exists half-written; the next write there removes the temp file."""
    ckpt_code = ("import torch\nfrom captioner import checkpoint\nfrom captioner.model import CaptionModel, ModelConfig\n"
                 "from captioner.perception import BackboneInfo\nfrom captioner.vocab import Vocabulary\n"
                 "model = CaptionModel(ModelConfig(embedding_dim=16, vocab_size=8, hidden=8, word_dim=8, attention_dim=8))\n"
                 "torch.save = lambda obj, path: die(path)\n"
                 "checkpoint.save_checkpoint('model.pt', model, Vocabulary(), {}, [], "
                 "BackboneInfo('yolo11n.yaml', 24, 80, (16,), (16,), 'w.pt', 'a' * 64), {}, 4.0)\n")
    cache_code = ("import numpy as np\nfrom pathlib import Path\nfrom captioner.features import FeatureCache, VideoFeatures\n"
                  "from captioner.video import VideoInfo\n"
                  "np.savez_compressed = lambda handle, **arrays: die(handle.name)\n"
                  "FeatureCache('.').save(Path('clip-key.npz'), VideoFeatures(VideoInfo('c', 1, 1, 1, 1, 1), []))\n")
    for code, target in ((ckpt_code, "model.pt"), (cache_code, "clip-key.npz")):
        folder = tmp_path / target.split(".")[0]
        folder.mkdir()
        result = _die_mid_write(code, folder)
        assert result.returncode == -signal.SIGKILL, result.stderr
        assert not (folder / target).exists()  # never a half-written checkpoint or cache entry
        assert len(hidden(folder)) == 1 and hidden(folder)[0].startswith(f".{target}.")
        _age(folder)
        fileio._swept.discard(str(folder.resolve()))
        with fileio.atomic_output(folder / "next.txt") as tmp:  # the next write into that folder...
            tmp.write_text("x")
        assert hidden(folder) == []  # ...removes what the killed writer left


# ------------------------------------------------------------------------------------------------
# the feature cache


def test_corrupt_cache_entry_is_detected_ignored_and_rebuilt(perception, clips, tmp_path, caplog):
    cache = FeatureCache(tmp_path / "cache")
    first, hit = extract_features(clips / "a.mp4", perception, analysis_fps=2.0, cache=cache)
    entry, = (tmp_path / "cache").glob("*.npz")
    good_bytes = entry.read_bytes()
    damaged = bytearray(good_bytes)
    damaged[len(damaged) // 3: len(damaged) // 3 + 64] = b"\x00" * 64  # bit rot inside the zip
    entry.write_bytes(bytes(damaged))
    caplog.clear()
    again, hit = extract_features(clips / "a.mp4", perception, analysis_fps=2.0, cache=cache)
    assert not hit  # detected and ignored...
    assert any("unreadable" in r.getMessage() and entry.name in r.getMessage() for r in caplog.records)
    assert [f.t_sec for f in again.frames] == [f.t_sec for f in first.frames]
    with zipfile.ZipFile(entry) as archive:  # ...and rebuilt: a whole, valid entry again
        assert archive.testzip() is None
    third, hit = extract_features(clips / "a.mp4", perception, analysis_fps=2.0, cache=cache)
    assert hit and len(third.frames) == len(first.frames)
    assert hidden(tmp_path / "cache") == []


class _Payload:
    """Unpickling this would create a file: the proof that nothing was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_cache_entries_never_unpickle(perception, clips, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    extract_features(clips / "a.mp4", perception, analysis_fps=2.0, cache=cache)
    entry, = (tmp_path / "cache").glob("*.npz")
    marker = tmp_path / "pwned"
    with np.load(entry, allow_pickle=False) as data:
        arrays = dict(data)
    arrays["t_sec"] = np.array([_Payload(marker)], dtype=object)  # an object array: pickled inside the npz
    np.savez(entry, **arrays)
    assert cache.load(entry) is None and not marker.exists()  # refused (allow_pickle=False), nothing ran
    _, hit = extract_features(clips / "a.mp4", perception, analysis_fps=2.0, cache=cache)
    assert not hit and not marker.exists()


def test_cache_save_on_a_full_disk_keeps_the_features(perception, clips, tmp_path, monkeypatch, caplog):
    def full(handle, **arrays):
        handle.write(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez_compressed", full)
    features, hit = extract_features(clips / "a.mp4", perception, analysis_fps=2.0, cache=FeatureCache(tmp_path / "c"))
    assert not hit and len(features.frames) == 4
    assert any("No space left" in r.getMessage() for r in caplog.records)
    assert list((tmp_path / "c").iterdir()) == []  # no entry, no partial, no temp


# ------------------------------------------------------------------------------------------------
# checkpoints and YOLO weights


def test_corrupt_and_foreign_checkpoints_are_refused_clearly(tmp_path):
    from captioner.checkpoint import load_checkpoint
    from captioner.model_files import DEFAULT_CHECKPOINT, SHIPPED_DIR, SHIPPED_YOLO_NAME

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(DEFAULT_CHECKPOINT.read_bytes()[:100_000])
    with pytest.raises(ModelError, match=r"truncated.pt: not a readable captioner checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(ModelError, match=rf"{SHIPPED_YOLO_NAME}: not a readable captioner checkpoint"):
        load_checkpoint(SHIPPED_DIR / SHIPPED_YOLO_NAME)  # a YOLO file given as the caption model
    import torch

    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)  # some other model's plain state dict
    with pytest.raises(ModelError, match=r"foreign.pt: checkpoint format None"):
        load_checkpoint(foreign)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"format": 1, "payload": _Payload(marker)}, handle, protocol=2)
    with pytest.raises(ModelError, match="evil.pt"):
        load_checkpoint(evil)  # weights_only=True: refused, and nothing ran
    assert not marker.exists()


def test_unfit_model_files_exit_2_after_the_inputs_are_checked(clips, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for weights, says in ((tmp_path / "missing.pt", "file not found"), (REPO / "weights" / "yolo11n-coco-int8w.pt",
                                                                         "not a readable captioner checkpoint")):
        out = subprocess.run([sys.executable, "-m", "captioner", str(clips / "a.mp4"), "--weights", str(weights), "-o",
                              str(tmp_path / "o")], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert not (tmp_path / "o").exists()


def test_default_weights_never_download_without_saying_so(tmp_path, monkeypatch, caplog):
    """With the shipped backbone gone and no YOLO_OFFLINE, Ultralytics would download yolo11n.pt:
    it is said in the log before anything is fetched (here the fetch is stubbed to fail)."""
    import ultralytics

    from captioner.model_files import YOLO_WEIGHTS_ENV as WEIGHTS_ENV
    from captioner.perception import Perception

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("captioner.model_files.SHIPPED_DIR", tmp_path / "nothing")
    attempts = []

    def no_network(weights, *args, **kwargs):
        attempts.append((weights, [r.getMessage() for r in caplog.records]))
        raise ConnectionError("offline test machine")

    monkeypatch.setattr(ultralytics, "YOLO", no_network)
    with pytest.raises(ModelError, match="could not be downloaded"):
        Perception()
    (weights, said_before), = attempts
    assert weights == "yolo11n.pt" and any("will try to download" in m for m in said_before)
