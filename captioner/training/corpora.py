"""Human caption corpora: readers for every format in ../shared/data/captions (and a user's own
caption file), and the deterministic split of corpus videos.

Readers turn MSVD / DiDeMo TSV, MSR-VTT CSV / JSON and ActivityNet / YouCook2 dense JSON into
``CaptionRecord``s. ``split_of`` splits by *video*, never by sentence, so all captions of one
video land on the same side.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import CaptionerError
from ..video import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]

# --------------------------------------------------------------------------- records


@dataclass
class CaptionRecord:
    """One human caption sentence. Times are seconds within the video (dense corpora only)."""

    source: str  # "msvd", "msrvtt", "activitynet", "didemo", "youcook2", "user", ...
    video_id: str  # the video's id in its corpus; for user data, the video file's stem
    sentence: str
    t_start: float | None = None
    t_end: float | None = None


def _clean_sentence(text: str) -> str:
    """Collapse whitespace (DiDeMo has newlines inside captions) and strip separators."""
    return re.sub(r"\s+", " ", text).strip(" ,;")


def _video_stem(name: str) -> str:
    """``"clips/abc.mp4"`` -> ``"abc"``; ids without a video extension are kept whole."""
    name = name.strip().replace("\\", "/").rsplit("/", 1)[-1]
    for ext in VIDEO_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _read_text(path: Path) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CaptionerError(f"caption file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptionerError(f"cannot read caption file {path}: {exc} (expected UTF-8 text)") from exc


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CaptionerError(f"{path} is not valid JSON: {exc}") from exc


def _read_joined_tsv(path: Path, source: str) -> list[CaptionRecord]:
    """``caption, caption, caption<TAB>video`` per row (MSVD and DiDeMo from Region_Learner).

    Rows are parsed as CSV with a tab delimiter because DiDeMo quotes captions that contain
    newlines. Captions are split on ", " because that is how the format joined them; the rare
    caption that itself contained ", " therefore comes out as two fragments.
    """
    path = Path(path)
    records: list[CaptionRecord] = []
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter="\t")
    try:
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2 or not row[1].strip():
                raise CaptionerError(
                    f"{path}, line {reader.line_num}: expected 'caption, caption, ...<TAB>video id', "
                    f"got {len(row)} tab-separated field(s): {str(row)[:120]}")
            video_id = _video_stem(row[1])
            for part in row[0].split(", "):
                sentence = _clean_sentence(part)
                if sentence:
                    records.append(CaptionRecord(source, video_id, sentence))
    except csv.Error as exc:
        raise CaptionerError(f"{path}, line {reader.line_num}: malformed TSV: {exc}") from exc
    if not records:
        raise CaptionerError(f"{path} holds no captions (expected 'caption, caption<TAB>video id' rows)")
    return records


def read_msvd_tsv(path: str | Path, source: str = "msvd") -> list[CaptionRecord]:
    """MSVD as in Region_Learner: all captions of a clip joined by ", ", a TAB, the clip id."""
    return _read_joined_tsv(Path(path), source)


def read_didemo_tsv(path: str | Path, source: str = "didemo") -> list[CaptionRecord]:
    """DiDeMo as in Region_Learner: same layout as MSVD; the id is the video file name, whose
    stem becomes ``video_id``. DiDeMo's segment times are not in this file, so times are None."""
    return _read_joined_tsv(Path(path), source)


def read_msrvtt_csv(path: str | Path, source: str = "msrvtt") -> list[CaptionRecord]:
    """JSFusion MSR-VTT list: header ``key;vid_key;video_id;sentence``, one caption per row."""
    path = Path(path)
    lines = _read_text(path).splitlines()
    header = [h.strip().lower() for h in lines[0].split(";")] if lines else []
    if header[:4] != ["key", "vid_key", "video_id", "sentence"]:
        raise CaptionerError(f"{path}: expected the JSFusion header 'key;vid_key;video_id;sentence', "
                             f"got {lines[0][:80] if lines else 'an empty file'!r}")
    records = []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(";", 3)  # the sentence itself may contain ';'
        if len(parts) != 4 or not parts[2].strip():
            raise CaptionerError(f"{path}, line {line_no}: expected 4 ';'-separated fields, got {line[:120]!r}")
        sentence = _clean_sentence(parts[3])
        if sentence:
            records.append(CaptionRecord(source, _video_stem(parts[2]), sentence))
    return records


def _msrvtt_json_records(data: Any, path: Path, source: str) -> list[CaptionRecord]:
    sentences = data.get("sentences") if isinstance(data, dict) else None
    if not isinstance(sentences, list):
        raise CaptionerError(f"{path}: expected MSR-VTT JSON with a 'sentences' list of "
                             "{'video_id', 'caption'} objects")
    records = []
    for i, item in enumerate(sentences):
        if not isinstance(item, dict) or "video_id" not in item or "caption" not in item:
            raise CaptionerError(f"{path}: sentences[{i}] lacks 'video_id' or 'caption': {str(item)[:120]}")
        sentence = _clean_sentence(str(item["caption"]))
        if sentence:
            records.append(CaptionRecord(source, _video_stem(str(item["video_id"])), sentence))
    return records


def read_msrvtt_json(path: str | Path, source: str = "msrvtt") -> list[CaptionRecord]:
    """Official MSR-VTT ``videodatainfo.json``: ``{"sentences": [{"video_id", "caption"}], ...}``.

    The clips are cut from longer YouTube videos but each clip file starts at 0, and the
    captions describe the whole clip, so times are None."""
    path = Path(path)
    return _msrvtt_json_records(_read_json(path), path, source)


def _dense_records(data: Any, path: Path, source: str) -> list[CaptionRecord]:
    if not isinstance(data, dict):
        raise CaptionerError(f"{path}: expected dense-caption JSON {{video_id: {{duration, timestamps, sentences}}}}")
    records = []
    for video_id, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sentences"), list):
            raise CaptionerError(f"{path}: entry {video_id!r} has no 'sentences' list")
        stamps = entry.get("timestamps")
        sentences = entry["sentences"]
        if stamps is not None and (not isinstance(stamps, list) or len(stamps) != len(sentences)):
            raise CaptionerError(f"{path}: entry {video_id!r} has {len(sentences)} sentences but "
                                 f"{len(stamps) if isinstance(stamps, list) else 'no list of'} timestamps")
        for i, raw in enumerate(sentences):
            t_start = t_end = None
            if stamps is not None:
                try:
                    t_start, t_end = (float(t) for t in stamps[i])
                except (TypeError, ValueError):
                    raise CaptionerError(f"{path}: entry {video_id!r} timestamp {i} is not [start, end]: "
                                         f"{stamps[i]!r}") from None
                if t_end < t_start:  # a few annotations are reversed; keep the interval
                    t_start, t_end = t_end, t_start
            sentence = _clean_sentence(str(raw))
            if sentence:
                records.append(CaptionRecord(source, _video_stem(str(video_id)), sentence, t_start, t_end))
    return records


def read_dense_json(path: str | Path, source: str) -> list[CaptionRecord]:
    """ActivityNet Captions / YouCook2 (CM2_DVC layout): ``{video_id: {duration, timestamps,
    sentences}}``; each sentence gets its ``[t_start, t_end]`` in seconds."""
    path = Path(path)
    return _dense_records(_read_json(path), path, source)


def _guess_source(path: Path) -> str:
    text = str(path).lower()
    for key, source in (("msvd", "msvd"), ("msrvtt", "msrvtt"), ("msr-vtt", "msrvtt"), ("didemo", "didemo"),
                        ("youcook", "youcook2"), ("yc2", "youcook2"), ("activitynet", "activitynet"),
                        ("anet", "activitynet")):
        if key in text:
            return source
    return "user"


def read_captions(path: str | Path, source: str | None = None) -> list[CaptionRecord]:
    """Read any supported caption file, detecting its format from extension and content.

    ``.tsv``: joined captions TAB video (MSVD / DiDeMo); ``.csv``: JSFusion MSR-VTT;
    ``.json``: MSR-VTT ``{"sentences": [...]}`` or dense ``{video_id: {timestamps, sentences}}``.
    ``source`` defaults to a guess from the path (``"user"`` when nothing matches).
    """
    path = Path(path)
    source = source or _guess_source(path)
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return _read_joined_tsv(path, source)
    if suffix == ".csv":
        return read_msrvtt_csv(path, source)
    if suffix == ".json":
        data = _read_json(path)
        if isinstance(data, dict) and isinstance(data.get("sentences"), list):
            return _msrvtt_json_records(data, path, source)
        if isinstance(data, dict) and data and all(isinstance(v, dict) and "sentences" in v for v in data.values()):
            return _dense_records(data, path, source)
        raise CaptionerError(f"{path}: unknown caption JSON layout; expected MSR-VTT "
                             "{'sentences': [{'video_id', 'caption'}]} or dense "
                             "{video_id: {'timestamps', 'sentences'}}")
    raise CaptionerError(f"{path}: unknown caption file type {suffix!r}; use .tsv (MSVD-style), "
                         ".csv (JSFusion MSR-VTT) or .json (MSR-VTT or ActivityNet-style)")


# Derived files in the shared captions folder that repeat another corpus's rows.
_DERIVED_FILES = {"clip_captions.json"}


def load_shared_corpora(captions_dir: str | Path) -> list[CaptionRecord]:
    """Every caption corpus under ``captions_dir`` (train/val/test files alike; split later
    with ``split_of``). ``clip_captions.json`` is skipped: it repeats MSVD / MSR-VTT rows."""
    captions_dir = Path(captions_dir)
    if not captions_dir.is_dir():
        raise CaptionerError(f"caption folder not found: {captions_dir} (expected ../shared/data/captions)")
    t0 = time.perf_counter()
    records: list[CaptionRecord] = []
    for path in sorted(captions_dir.rglob("*")):
        if not path.is_file() or path.name in _DERIVED_FILES or path.suffix.lower() not in (".tsv", ".csv", ".json"):
            continue
        recs = read_captions(path)
        log.info("%s: %d sentences", path.relative_to(captions_dir), len(recs))
        records.extend(recs)
    if not records:
        raise CaptionerError(f"no caption files (.tsv/.csv/.json) found under {captions_dir}")
    log.info("read %d caption sentences from %s in %.1f s", len(records), captions_dir, time.perf_counter() - t0)
    return records


def read_user_captions(path: str | Path, video_dir: str | Path | None = None) -> list[CaptionRecord]:
    """Captions for the user's own videos: MSVD-style TSV, MSR-VTT-style JSON (or JSFusion CSV),
    or ActivityNet-style JSON. ``video_id`` is the video file stem ("clips/a.mp4" -> "a").

    With ``video_dir``, ids are matched to the video files in it (ActivityNet's "v_" prefix
    may be present on either side), records without a video are dropped with a warning, and a
    file matching no video at all is an error.
    """
    path = Path(path)
    records = read_captions(path, source="user")
    if video_dir is None:
        return records
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise CaptionerError(f"video folder not found: {video_dir}")
    stems = {p.stem for p in video_dir.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS}
    matched: list[CaptionRecord] = []
    missing: set[str] = set()
    for rec in records:
        for candidate in (rec.video_id, rec.video_id.removeprefix("v_"), "v_" + rec.video_id):
            if candidate in stems:
                matched.append(CaptionRecord(rec.source, candidate, rec.sentence, rec.t_start, rec.t_end))
                break
        else:
            missing.add(rec.video_id)
    if not matched:
        raise CaptionerError(f"none of the {len({r.video_id for r in records})} video ids in {path} matches a "
                             f"video file in {video_dir} (ids must equal the file names without extension)")
    if missing:
        log.warning("%s: %d video id(s) have no video in %s, e.g. %s", path, len(missing), video_dir,
                    ", ".join(sorted(missing)[:5]))
    return matched


# --------------------------------------------------------------------------- splits


def split_of(video_id: str, val_fraction: float = 0.05, test_fraction: float = 0.05) -> Split:
    """Deterministic split of a *video* (never of a sentence): all captions of one video, and
    ActivityNet's two val annotations of the same video, land on the same side."""
    if not (0.0 <= val_fraction and 0.0 <= test_fraction and val_fraction + test_fraction < 1.0):
        raise CaptionerError(f"split fractions must be >= 0 and sum below 1, got val={val_fraction}, "
                             f"test={test_fraction}")
    digest = hashlib.sha1(video_id.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64  # uniform in [0, 1), stable across runs/machines
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


