"""Shared fixtures. Core tests need no ../shared: clips are generated from Ultralytics' bundled
images. Tests that need ../shared use the ``shared_dir`` fixture, which skips with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAPTIONER_SHARED", REPO.parent / "shared"))

# Tests run offline, with the YOLO weights shipped in weights/ (as a fresh clone does).
if not os.environ.get("NLTK_DATA") and (SHARED / "data" / "nltk_data").exists():
    os.environ["NLTK_DATA"] = str(SHARED / "data" / "nltk_data")
os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"needs ../shared/data (real clips and corpora), not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def perception():
    """A YOLO at imgsz 320 (fast on 2 cores), loaded once for the whole run."""
    from captioner.errors import ModelError
    from captioner.perception import Perception

    try:
        return Perception(imgsz=320)
    except ModelError as exc:
        pytest.skip(f"no YOLO weights available offline: {exc}")


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory) -> Path:
    """6 s, 10 fps, 640x360: a bus photo moving right, a photo of two men moving left."""
    from captioner.training.synthetic import make_clip

    return make_clip(tmp_path_factory.mktemp("clips") / "bus_people.mp4", duration_sec=6.0, fps=10.0)


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # pragma: no cover - imageio-ffmpeg is a dependency
        pytest.skip(f"no ffmpeg binary: {exc}")


@pytest.fixture(scope="session")
def model():
    """The shipped caption model with YOLO at imgsz 320, loaded once for the whole run."""
    import captioner
    from captioner.errors import ModelError

    try:
        return captioner.load_model(imgsz=320)
    except ModelError as exc:
        pytest.skip(f"needs the trained caption model and YOLO weights: {exc}")


# ---- figures the acceptance criteria ask to see, printed whatever -s says -------------------------

_REPORTS: list[tuple[str, str]] = []


@pytest.fixture()
def report(request, tmp_path):
    """``report(title, text)``: keep ``text`` for the end-of-run summary (printed with or without
    ``-s``) and write it to ``tmp_path / <title>.txt``; returns that file."""

    def add(title: str, text: str) -> Path:
        _REPORTS.append((f"{title} ({request.node.name})", text))
        path = tmp_path / ("".join(c if c.isalnum() else "_" for c in title) + ".txt")
        path.write_text(text + "\n", encoding="utf-8")
        print(f"\n{title}\n{text}\n(also in {path})")
        return path

    return add


def pytest_terminal_summary(terminalreporter):
    for title, text in _REPORTS:
        terminalreporter.section(title)
        terminalreporter.write_line(text)
