"""captioner batch: the manifest and resuming (after kill -9 at random moments), bad inputs among
good ones, changed settings, worker processes, the Ray engine against the local one, the
tracks formats and the searchable caption library (index, search, the web app's handlers).

Clips are generated (1-2 s, 160x90) and captioned at imgsz 160, so every test stays short on
2 CPU cores; the Ray test starts a local Ray with 2 CPUs and shuts it down.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from captioner import cli
from captioner.batch import BatchConfig, BatchError, collect_inputs, run_batch
from captioner.coco import COCO_CLASSES
from captioner.jobs import OutputOptions
from captioner.library import Library, fts_query
from captioner.options import CaptionOptions
from captioner.result import Evidence, NextEvent, Result, Segment, VideoMeta
from captioner.writers import CAPTION_FORMATS, WriteJSON, get_writer, parse_srt, parse_vtt

REPO = Path(__file__).resolve().parents[1]
KILL_CLIPS, KILL_ROUNDS, KILL_SEED = 20, 5, 20240611
SUBPROCESS_TIMEOUT_SEC = 120


def make_clips(folder: Path, n: int, seed: int = 0) -> list[Path]:
    from captioner.training.synthetic import make_clip

    rng = random.Random(seed)
    return [make_clip(folder / f"clip{i:02d}.mp4", duration_sec=round(rng.uniform(1.0, 2.0), 1), fps=10.0, width=160,
                      height=90) for i in range(n)]


@pytest.fixture(scope="module")
def clips20(tmp_path_factory) -> list[Path]:
    return make_clips(tmp_path_factory.mktemp("clips20"), KILL_CLIPS, seed=1)


@pytest.fixture(scope="module")
def clips3(tmp_path_factory) -> list[Path]:
    return make_clips(tmp_path_factory.mktemp("clips3"), 3, seed=2)


def manifest_rows(out: Path) -> list[dict]:
    db = sqlite3.connect(f"file:{out / 'manifest.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM inputs ORDER BY id")]
    finally:
        db.close()


def status_counts(out: Path) -> dict[str, int]:
    try:
        rows = manifest_rows(out) if (out / "manifest.sqlite").exists() else []
    except sqlite3.OperationalError:  # being created
        return {}
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def run_counts(out: Path, pid: int) -> dict[str, int]:
    """Statuses of the inputs the run of process ``pid`` has touched (not rows a killed run left)."""
    try:
        db = sqlite3.connect(f"file:{out / 'manifest.sqlite'}?mode=ro", uri=True, timeout=30)
        try:
            return dict(db.execute("SELECT i.status, COUNT(*) FROM inputs i JOIN runs r ON i.run_id = r.id "
                                   "WHERE r.pid = ? GROUP BY i.status", (pid,)).fetchall())
        finally:
            db.close()
    except sqlite3.OperationalError:  # not created yet
        return {}


def temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if ".tmp" in p.name]


def batch_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


# ------------------------------------------------------------------------------------------------
# resume after kill -9


def test_resume_after_kill_9_at_random_moments(clips20, tmp_path):
    """Kill the batch (the process, and so its workers) at five random moments while it
    captions, rerun the same command each time; at the end all 20 are done exactly once, every
    output is complete and parseable, no temporary file is left.

    The moments are random in progress, not in seconds, so they fall while videos are being
    captioned however fast the machine is: each run is killed a random fraction of a second
    after it has finished a random number of inputs (spreading the kills over the batch)."""
    out = tmp_path / "out"
    base = [sys.executable, "-m", "captioner", "batch", str(clips20[0].parent), "-o", str(out), "--imgsz", "160",
            "--quiet"]
    rng = random.Random(KILL_SEED)
    moments = []
    started = time.monotonic()
    for round_ in range(KILL_ROUNDS):
        workers = "2" if round_ % 2 else "1"  # the worker processes must die with their parent too
        left = KILL_CLIPS - status_counts(out).get("done", 0)
        finish = rng.randint(1, max(1, left // (KILL_ROUNDS - round_ + 1)))  # inputs this run finishes first
        delay = rng.uniform(0.0, 0.4)
        with open(tmp_path / f"run{round_}.stderr", "w") as stderr:  # a file: a full pipe would stall it
            proc = subprocess.Popen(base + ["--workers", workers], env=batch_env(), stdout=subprocess.DEVNULL,
                                    stderr=stderr)
        try:
            deadline = time.monotonic() + 90
            while proc.poll() is None and time.monotonic() < deadline:
                if (out / "manifest.sqlite").exists() and run_counts(out, proc.pid).get("done", 0) >= finish:
                    break
                time.sleep(0.02)
            time.sleep(delay)
            killed = proc.poll() is None
            proc.kill()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        counts = status_counts(out)
        moments.append((workers, finish, round(delay, 2), killed, counts.get("done", 0), counts.get("running", 0)))
    final = subprocess.run(base + ["--workers", "1"], env=batch_env(), capture_output=True, text=True,
                           timeout=SUBPROCESS_TIMEOUT_SEC)
    assert final.returncode == 0, final.stderr

    rows = manifest_rows(out)
    sources = [r["source"] for r in rows]
    done = [r for r in rows if r["status"] == "done"]
    assert len(rows) == KILL_CLIPS and len(done) == KILL_CLIPS
    assert len(set(sources)) == len(sources) == KILL_CLIPS and len({r["stem"] for r in rows}) == KILL_CLIPS
    assert sorted(sources) == sorted(str(c) for c in clips20)
    for row in rows:
        stem = row["stem"]
        assert sorted(json.loads(row["outputs"])) == sorted(f"{stem}.{ext}" for ext in CAPTION_FORMATS)
        data = json.loads((out / f"{stem}.json").read_text())
        assert data["video"]["path"] == row["source"] and data["segments"]
        assert data["segments"][-1]["end"] == pytest.approx(row["duration_sec"], abs=0.3)
        assert parse_srt((out / f"{stem}.srt").read_text()) and parse_vtt((out / f"{stem}.vtt").read_text())
        assert (out / f"{stem}.txt").read_text().strip() and (out / f"{stem}.tsv").read_text().startswith("start\t")
    leftovers = temp_files(out)
    assert not leftovers, leftovers
    expected = {f"{r['stem']}.{ext}" for r in rows for ext in CAPTION_FORMATS}
    made = {p.name for p in out.iterdir() if not p.name.startswith((".", "manifest.sqlite", "library.sqlite"))}
    assert made == expected  # nothing partial, nothing twice
    with Library(out, create=False) as library:
        videos = library.videos()
    assert sorted(v.stem for v in videos) == sorted(r["stem"] for r in rows)
    attempts = sum(r["attempts"] for r in rows)
    assert all(m[3] for m in moments), moments  # every kill hit a running batch
    print(f"\nkill-resume: {KILL_ROUNDS} kills (workers, killed after the run finished this many inputs, + delay s, "
          f"still running when killed, done in the manifest, inputs left mid-way): {moments}; "
          f"final run: {len(done)}/{KILL_CLIPS} done, "
          f"{len(sources) - len(set(sources))} duplicate rows, {len(leftovers)} temp files, "
          f"{len(made)} output files for {len(expected)} expected, {attempts} attempts in all, "
          f"{time.monotonic() - started:.0f} s")


# ------------------------------------------------------------------------------------------------
# bad inputs, lists, changed settings, missing outputs (in this process, with the shared model)


def config_for(inputs, out: Path, **kw) -> BatchConfig:
    output = OutputOptions(out, kw.pop("output_format", "all"), overwrite=kw.pop("overwrite", False))
    return BatchConfig(tuple(str(i) for i in inputs), output, CaptionOptions(imgsz=320, **kw.pop("options", {})), **kw)


def test_bad_files_among_good_ones_and_retry(model, clips3, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = [shutil.copy(c, folder / c.name) for c in clips3[:2]]
    (folder / "corrupt.mp4").write_bytes(Path(clips3[2]).read_bytes()[:1500])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.md").write_text("not a video")
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# one per line\n{folder.name}/corrupt.mp4\nin/missing.mp4\n\n{folder}/notes.md\n")
    out = tmp_path / "out"
    summary = run_batch(config_for([*good, folder / "empty.mp4", listing], out), model=model)
    assert (summary.done, summary.failed, summary.skipped, summary.exit_code) == (2, 3, 1, 1)
    rows = {Path(r["source"]).name: r for r in manifest_rows(out)}
    assert {n: r["status"] for n, r in rows.items()} == {
        "clip00.mp4": "done", "clip01.mp4": "done", "empty.mp4": "failed", "corrupt.mp4": "failed",
        "missing.mp4": "failed", "notes.md": "skipped"}
    for name in ("empty.mp4", "corrupt.mp4", "missing.mp4"):
        assert name in rows[name]["error"], rows[name]["error"]  # each error names its file
    assert "not a video or image type" in rows["notes.md"]["error"]
    assert sorted(p.name for p in out.glob("*.json")) == ["clip00.json", "clip01.json"]

    again = run_batch(config_for([*good, folder / "empty.mp4", listing], out), model=model)
    assert (again.to_do, again.done_before, again.failed_before, again.exit_code) == (0, 2, 3, 1)

    shutil.copy(clips3[2], folder / "corrupt.mp4")  # repaired
    retried = run_batch(config_for([*good, folder / "empty.mp4", listing], out, retry_failed=True), model=model)
    assert (retried.to_do, retried.done, retried.failed, retried.done_before) == (3, 1, 2, 2)
    assert json.loads((out / "corrupt.json").read_text())["video"]["path"] == str(folder / "corrupt.mp4")


def test_changed_settings_refused_then_redone_with_overwrite(model, clips3, tmp_path, capsys):
    out = tmp_path / "out"
    first = run_batch(config_for(clips3[:2], out, output_format="json"), model=model)
    assert first.done == 2
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    with pytest.raises(BatchError, match=r"window_sec: 4\.0 -> 2\.0.*--overwrite"):
        run_batch(config_for(clips3[:2], out, output_format="json", options={"window_sec": 2.0}), model=model)
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == before  # refused before touching anything
    # the CLI says the same and exits 2 (usage)
    code = cli.main(["batch", *map(str, clips3[:2]), "-o", str(out), "-f", "json", "--imgsz", "320", "--window", "2",
                     "--quiet"])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    redone = run_batch(config_for(clips3[:2], out, output_format="json", overwrite=True,
                                  options={"window_sec": 2.0}), model=model)
    assert (redone.redone, redone.done, redone.done_before) == (2, 2, 0)
    for path in out.glob("*.json"):
        assert json.loads(path.read_text())["settings"]["window_sec"] == 2.0

    (out / "clip00.json").unlink()  # an output removed by hand: that input is no longer done
    again = run_batch(config_for(clips3[:2], out, output_format="json", options={"window_sec": 2.0}), model=model)
    assert (again.done, again.done_before) == (1, 1) and (out / "clip00.json").is_file()
    both = config_for(clips3[:1], out, output_format="json,txt", overwrite=True, options={"window_sec": 2.0})
    assert run_batch(both, model=model).done == 1
    (out / "clip00.txt").unlink()  # one of two files gone: the other is made again too, not refused as existing
    again = run_batch(config_for(clips3[:1], out, output_format="json,txt", options={"window_sec": 2.0}), model=model)
    assert again.done == 1 and (out / "clip00.txt").is_file()


def test_inputs_lists_urls_and_stems(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for folder in (a, b):
        (folder / "clip.mp4").write_bytes(b"x")
    (tmp_path / "list.txt").write_text("a/clip.mp4\nhttps://example.com/v/clip.mp4?x=1\n# comment\nb\n")
    sources, skipped = collect_inputs([str(tmp_path / "list.txt"), str(a / "clip.mp4")])
    assert sources == [str(a / "clip.mp4"), "https://example.com/v/clip.mp4?x=1", str(b / "clip.mp4")]
    assert skipped == {}
    from captioner.fileio import unique_stem
    from captioner.jobs import source_name

    used: set[str] = set()
    assert [unique_stem(source_name(s), used) for s in sources] == ["clip", "clip-2", "clip-3"]


def test_usage_errors(tmp_path, capsys):
    assert cli.main(["batch", str(tmp_path), "-o", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert cli.main(["batch", str(tmp_path), "-o", str(tmp_path / "o"), "--ray-address", "x:1"]) == 2
    capsys.readouterr()
    # a pattern that matches nothing is not dropped: it fails by name, like a missing file (exit 1)
    pattern = str(tmp_path / "nothing-*.mp4")
    assert cli.main(["batch", pattern, "-o", str(tmp_path / "o"), "--imgsz", "160"]) == 1
    assert f"{pattern}: no video or image file matches this pattern" in capsys.readouterr().err


def test_ray_missing_says_how_to_install(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(BatchError, match=r"pip install 'captioner\[ray\]'"):
        run_batch(config_for([tmp_path], tmp_path / "o", engine="ray"))


def test_second_batch_into_the_same_folder_is_refused(tmp_path):
    from captioner.engines import OutputLock

    with OutputLock(tmp_path):
        with pytest.raises(BatchError, match="another `captioner batch` is running"):
            with OutputLock(tmp_path):
                pass
    with OutputLock(tmp_path):  # released
        pass


# ------------------------------------------------------------------------------------------------
# the Ray engine gives what the local engine gives


@pytest.mark.ray
def test_ray_engine_matches_local_engine(clips3, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'captioner[ray]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'captioner[ray]')")
    options = {"imgsz": 160}
    local = run_batch(BatchConfig(tuple(map(str, clips3)), OutputOptions(tmp_path / "local", "json,tracks"),
                                  CaptionOptions(**options)))
    assert local.done == 3
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 ** 2, logging_level="warning",
             runtime_env={"env_vars": {"PYTHONPATH": batch_env()["PYTHONPATH"]}})
    try:
        remote = run_batch(BatchConfig(tuple(map(str, clips3)), OutputOptions(tmp_path / "ray", "json,tracks"),
                                       CaptionOptions(**options), workers=2, engine="ray"))
    finally:
        ray.shutdown()
    assert (remote.done, remote.failed) == (3, 0), remote.failures
    same_json = same_captions = 0
    segments = 0
    for clip in clips3:
        a = json.loads((tmp_path / "local" / f"{clip.stem}.json").read_text())
        b = json.loads((tmp_path / "ray" / f"{clip.stem}.json").read_text())
        caps_a = [(s["start"], s["end"], s["caption"]) for s in a["segments"]]
        caps_b = [(s["start"], s["end"], s["caption"]) for s in b["segments"]]
        assert caps_a == caps_b, (clip.name, caps_a, caps_b)
        same_captions += 1
        same_json += a == b
        segments += len(caps_a)
        assert (tmp_path / "ray" / f"{clip.stem}.tracks.csv").read_text() == \
            (tmp_path / "local" / f"{clip.stem}.tracks.csv").read_text()
    assert same_json == len(clips3)
    engines = [r[0] for r in sqlite3.connect(tmp_path / "ray" / "manifest.sqlite").execute("SELECT engine FROM runs")]
    assert engines == ["ray"] and status_counts(tmp_path / "ray") == {"done": 3}
    print(f"\nray vs local: {len(clips3)} videos, {segments} segments: identical captions for {same_captions}, "
          f"identical json for {same_json}, identical tracks.csv for {len(clips3)}")


# ------------------------------------------------------------------------------------------------
# tracks formats


def test_tracks_formats_one_row_per_detection(model, clips3, tmp_path):
    clip = clips3[0]
    out = tmp_path / "out"
    code = cli.main([str(clip), "-o", str(out), "-f", "json,tracks,tracks.jsonl", "--imgsz", "320", "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{clip.stem}.json", f"{clip.stem}.tracks.csv",
                                                     f"{clip.stem}.tracks.jsonl"]
    data = json.loads((out / f"{clip.stem}.json").read_text())
    analysed = {t for s in data["segments"] for t in s["evidence"]["frame_times_sec"]}
    with open(out / f"{clip.stem}.tracks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    lines = [json.loads(line) for line in (out / f"{clip.stem}.tracks.jsonl").read_text().splitlines()]
    assert rows and len(rows) == len(lines)
    assert list(rows[0]) == ["t_sec", "track_id", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2"]
    width, height = data["video"]["width"], data["video"]["height"]
    for row, line in zip(rows, lines):
        assert float(row["t_sec"]) in analysed and float(row["t_sec"]) == line["t_sec"]
        assert COCO_CLASSES[int(row["class_id"])] == row["class_name"] == line["class_name"]
        assert int(row["track_id"]) == line["track_id"] >= -1
        assert 0.0 < float(row["confidence"]) <= 1.0
        x1, y1, x2, y2 = (float(row[k]) for k in ("x1", "y1", "x2", "y2"))
        assert -1 <= x1 < x2 <= width + 1 and -1 <= y1 < y2 <= height + 1 and line["box_xyxy"] == [x1, y1, x2, y2]
    # a result without its per-frame detections cannot be written as tracks: said, not an empty file
    result = Result.from_dict(data)
    with pytest.raises(Exception, match="keep_detections=True"):
        get_writer("tracks", tmp_path / "t")(result, clip)
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())


# ------------------------------------------------------------------------------------------------
# the caption library


def seg(start, end, caption, counts, nxt=""):
    events = [NextEvent(nxt, 0.6, "stay", "dog")] if nxt else []
    return Segment(start, end, caption, 0.5, events, Evidence(list(range(sum(counts.values()))), list(counts),
                                                             [start], dict(counts)))


def known_library(folder: Path) -> Path:
    """Three videos whose captions are known."""
    videos = {
        "beach": [seg(0, 4, "a man stands on the sand", {"person": 1}),
                  seg(4, 8, "a dog runs on the beach", {"dog": 1, "person": 1}, "the dog will stay in view (0.60)"),
                  seg(8, 12, "waves roll onto the beach", {})],
        "park": [seg(0, 4, "a dog runs in the park", {"dog": 1}),
                 seg(4, 8, "three people walk a dog on the grass", {"person": 3, "dog": 1})],
        "street": [seg(0, 4, "cars drive down the street", {"car": 4}),
                   seg(4, 8, "a person crosses the street", {"person": 1}, "a dog may enter (0.40)")],
    }
    for stem, segments in videos.items():
        result = Result(VideoMeta(f"/archive/{stem}.mp4", segments[-1].end, 25.0, 640, 360), segments,
                        {"window_sec": 4.0}, {})
        WriteJSON(folder)(result, stem=stem)
    (folder / "notes.json").write_text('{"not": "ours"}')
    return folder


def test_search_ranks_the_right_segment_first(tmp_path, capsys):
    lib_dir = known_library(tmp_path / "lib")
    assert cli.main(["index", str(lib_dir)]) == 0
    captured = capsys.readouterr()
    assert "3 video(s), 7 segment(s)" in captured.out and "notes.json" in captured.err

    assert cli.main(["search", str(lib_dir), "dog runs on the beach"]) == 0
    first = capsys.readouterr().out.splitlines()[0].split("\t")
    assert first[:3] == ["beach", "4.0-8.0", "a dog runs on the beach"]

    assert cli.main(["search", str(lib_dir), '"runs in the park"', "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert (hits[0]["video"], hits[0]["start"], hits[0]["caption"]) == ("park", 0.0, "a dog runs in the park")
    assert hits[0]["score"] >= hits[-1]["score"]

    assert cli.main(["search", str(lib_dir), "dog", "--class", "person", "--min-count", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [(h["video"], h["start"]) for h in hits] == [("park", 4.0)] and hits[0]["classes"]["person"] == 3

    with Library(lib_dir, create=False) as library:
        assert library.search("beach")[0].video == "beach"
        assert {h.video for h in library.search("dog")} == {"beach", "park", "street"}  # forecasts are searched too
        assert library.search("running dogs")[0].caption.startswith("a dog runs")  # stemmed
        assert library.search('dog AND (beach OR "', limit=3)  # operators are words, never a syntax error
        assert [h.start for h in library.search("", classes=["car"])] == [0.0]
        assert library.class_names() == ["car", "dog", "person"]
    assert fts_query('dog "on the beach"') == '"on the beach" OR "dog" OR "dog on the beach"'

    (lib_dir / "street.json").unlink()
    assert cli.main(["index", str(lib_dir)]) == 0
    with Library(lib_dir, create=False) as library:
        assert sorted(v.stem for v in library.videos()) == ["beach", "park"]
    assert cli.main(["search", str(tmp_path / "nowhere"), "dog"]) == 1
    assert "captioner index" in capsys.readouterr().err


def test_library_tab_serves_only_library_videos(model, clips3, tmp_path):
    import gradio as gr

    from captioner.webapp import AppConfig, CaptionApp

    out = tmp_path / "out"
    assert run_batch(config_for(clips3[:2], out, output_format="json"), model=model).done == 2
    app = CaptionApp(model, config=AppConfig(work_dir=tmp_path / "work", samples_dir=None, library_dir=out))
    assert str(out.resolve()) not in app.allowed_paths  # not the folder: its manifest lists server paths
    rows, ids, summary = app.library_search("", None, 1)
    assert len(rows) == len(ids) >= 2 and "Click a row" in summary
    video, seek, _ = app.library_open(ids, gr.SelectData(None, {"index": [1, 0], "value": rows[1][0]}))
    assert video.value["orig_name"] == clips3[1].name  # (Gradio has copied it into its cache)
    assert seek == {"start": rows[1][1], "name": clips3[1].name}
    assert str(clips3[1].resolve()) in app.allowed_paths  # exactly that file, not its folder
    assert str(clips3[1].parent.resolve()) not in app.allowed_paths
    with pytest.raises(gr.Error):
        app.library_open(ids, gr.SelectData(None, {"index": [len(ids) + 5, 0], "value": ""}))
    without = CaptionApp(model, config=AppConfig(work_dir=tmp_path / "work2", samples_dir=None))
    assert without.allowed_paths == [str((tmp_path / "work2").resolve())]
    with pytest.raises(gr.Error, match="--library"):
        without.library_search("dog", None, 1)
