"""A plain `pip install` (not editable) captions offline: both model files are package data. The
wheel is built from a copy of the checkout, installed into a fresh virtual environment (its
dependencies come from this test's environment), and run from a folder outside the checkout
with no captioner environment variables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "person_enters_room.mp4"


def run(args: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    """(the wheel, the build's output): built with this environment's setuptools, from a copy."""
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("captioner", "weights"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    built = run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", dist, src])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list(dist.glob("captioner-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], built.stdout + built.stderr


def test_the_wheel_holds_both_model_files_and_builds_without_packaging_warnings(wheel):
    path, log = wheel
    names = set(zipfile.ZipFile(path).namelist())
    for needed in ("captioner/weights/captioner.pt", "captioner/weights/yolo11n-coco-int8w.pt",
                   "captioner/weights/MODEL_CARD.md", "captioner/grounding/__init__.py",
                   "captioner/training/data/clip_motion.json"):
        assert needed in names, needed
    assert "is absent from the `packages` configuration" not in log
    assert "SetuptoolsDeprecationWarning" not in log


def test_a_plain_install_captions_the_sample_offline_from_any_folder(wheel, tmp_path):
    path, _ = wheel
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", venv])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", path])
    assert installed.returncode == 0, installed.stderr
    # the dependencies (torch, ultralytics, ...) from this environment, after the venv's own packages
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_test_dependencies.pth").write_text(
        "\n".join(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(SAMPLE, work / SAMPLE.name)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CAPTIONER_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(YOLO_OFFLINE="1", HOME=str(work), YOLO_CONFIG_DIR=str(work))
    where = run([python, "-c", "import captioner, captioner.model_files as m; print(captioner.__file__); "
                 "print(m.SHIPPED_DIR)"], cwd=work, env=env)
    assert where.returncode == 0, where.stderr
    package_file, shipped = where.stdout.split()
    assert package_file.startswith(str(venv)) and shipped.startswith(str(venv)), where.stdout
    result = run([venv / "bin" / "captioner", SAMPLE.name, "-o", "out", "--imgsz", "320", "--quiet"], cwd=work, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "out" / "person_enters_room.json").is_file()
