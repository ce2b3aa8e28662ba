"""One file job and one error loop, shared by the CLI, the web app and batch runs.

``expand_inputs``: folders and globs -> media files (the CLI and ``captioner batch``).
``caption_file``: caption one input -> every requested writer -> optional annotated video. All
targets are checked before any work, and every file is written atomically, so a failure leaves
no partial output. ``run_each`` runs a job over many inputs: one bad input is reported (named,
with the problem) and never stops the others.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence, TypeVar
from urllib.parse import urlparse

from .errors import CaptionerError, OptionsError
from .fileio import check_targets, unique_stem
from .options import CaptionOptions, ProgressCallback
from .result import Result
from .video import is_image_file, is_media_file, is_url
from .writers import WRITERS, ResultWriter, parse_formats, write_result, writer_formats

if TYPE_CHECKING:  # the pipeline (and torch) load only when a model does
    from .pipeline import Captioner

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class OutputOptions:
    """What a file job writes, and where."""

    output_dir: Path = Path(".")
    output_format: str = "all"  # one of writers.OUTPUT_FORMATS, or several comma-separated
    show_next: bool = False  # add the what-happens-next line under each subtitle
    annotate: bool = False  # also write NAME.annotated.mp4
    overwrite: bool = False  # replace existing outputs

    def __post_init__(self) -> None:
        try:
            parse_formats(self.output_format)
        except CaptionerError as exc:
            raise OptionsError(str(exc)) from None

    def writers(self, still_image: bool = False) -> list[ResultWriter]:
        return [WRITERS[f](self.output_dir, show_next=self.show_next, overwrite=self.overwrite)
                for f in writer_formats(self.output_format, still_image)]

    def targets(self, stem: str, still_image: bool = False) -> list[Path]:
        """Every file a job writes for ``stem``: one per format, then the annotated video."""
        return ([w.output_path(stem=stem) for w in self.writers(still_image)]
                + ([annotated_path(self, stem, still_image)] if self.annotate else []))


@dataclass
class FileOutcome:
    """What happened to one input: its result and files, or the error that stopped it."""

    source: str
    result: Result | None = None
    written: list[Path] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def expand_inputs(patterns: Sequence[str]) -> list[Path | str]:
    """Inputs as given -> media files, in order, once each. An argument that names an existing
    file or folder is that path, whatever characters its name holds (yt-dlp names downloads
    ``Title [id].mp4``); only other arguments are glob patterns. Folders and globs expand to
    their video and image files (sorted); URLs stay URLs (strings). Nothing is dropped in
    silence: a missing file, a folder with nothing to caption, or a pattern that matches no
    video or image is kept as given, so that it fails by name ("no video or image file matches
    'x*.mp4'")."""
    items: list[Path | str] = []
    for pattern in patterns:
        if is_url(pattern):
            items.append(pattern)
            continue
        literal = os.path.lexists(pattern) or not glob.has_magic(pattern)
        matches = [pattern] if literal else sorted(glob.glob(pattern, recursive=True))
        found: list[Path] = []
        for match in matches:
            path = Path(match)
            if path.is_dir():
                found += sorted(p for p in path.rglob("*") if p.is_file() and is_media_file(p))
            elif literal or is_media_file(path):
                found.append(path)
        items += found or [Path(pattern)]
    seen: set[Path | str] = set()
    return [p for p in items if not (p in seen or seen.add(p))]


def output_stems(sources: Sequence[Path | str]) -> dict[Path | str, str]:
    """Each input's output stem, never one twice in a run: two inputs with one name get
    ``clip`` and ``clip-2`` (in the order given), as ``captioner batch`` names them."""
    used: set[str] = set()
    return {source: unique_stem(source_name(source), used, untrusted=is_url(str(source))) for source in sources}


def annotated_path(output: OutputOptions, stem: str, still_image: bool = False) -> Path:
    return output.output_dir / f"{stem}.annotated.{'jpg' if still_image else 'mp4'}"


def caption_file(model: Captioner, source: str | os.PathLike, output: OutputOptions,
                 options: CaptionOptions | None = None, *, stem: str | None = None, display_name: str | None = None,
                 progress: ProgressCallback | None = None, annotate_progress: ProgressCallback | None = None) -> FileOutcome:
    """Caption ``source`` and write its outputs as ``output`` says (``OUTPUT_DIR/STEM.EXT``;
    ``stem`` defaults to the source's). ``display_name`` replaces the path recorded in the
    result (the web app records the uploaded file's name, not its server path)."""
    from .annotate import render_annotated_image, render_annotated_video

    start = time.perf_counter()
    stem = stem or source_stem(source)
    still = isinstance(source, (str, os.PathLike)) and is_image_file(Path(source))
    writers = output.writers(still)
    annotated = annotated_path(output, stem, still) if output.annotate else None
    check_targets(output.targets(stem, still), overwrite=output.overwrite)  # before the work
    keep_detections = annotated is not None or any(w.needs_detections for w in writers)
    result = model.caption(source, options, progress=progress, keep_detections=keep_detections)
    if display_name is not None:
        result.video.path = display_name
    written: list[Path] = []
    try:
        if annotated is not None:
            render = render_annotated_image if result.video.is_image else render_annotated_video
            written.append(render(source, annotated, result, result.frame_detections, overwrite=output.overwrite,
                                  progress=annotate_progress))
        written[:0] = write_result(writers, result, stem=stem, overwrite=output.overwrite)
    except BaseException:
        if annotated in written and not output.overwrite:  # all or nothing: the video this job just made goes too
            annotated.unlink(missing_ok=True)
        raise
    finally:
        result.frame_detections = []  # written out; not kept in memory (nor sent between processes)
    return FileOutcome(str(source), result, written, None, time.perf_counter() - start)


def source_name(source: object) -> str:
    """The name an input's outputs are named after: the file's name, or a URL's last path part."""
    text = str(source)
    if is_url(text):
        url = urlparse(text)
        return Path(url.path).name or url.netloc or "stream"
    return Path(text).name


def source_stem(source: object) -> str:
    """The default stem of an input's outputs: the file's own, or a URL's last path part (made safe:
    a URL's text is not the user's file name)."""
    return unique_stem(source_name(source), set(), untrusted=is_url(str(source)))


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
EXPECTED_OS_ERRORS = (PermissionError, IsADirectoryError, NotADirectoryError)


def is_expected(exc: BaseException) -> bool:
    """An error with a plain explanation (no traceback needed): ours, permissions, a full disk."""
    return isinstance(exc, (CaptionerError, *EXPECTED_OS_ERRORS)) or (isinstance(exc, OSError) and exc.errno in DISK_FULL)


def error_message(exc: BaseException, source: object) -> str:
    """One line naming the input and the problem; no traceback for errors we raise on purpose."""
    if isinstance(exc, CaptionerError):  # e.g. about an output file: say which input it was for
        text = str(exc)
        return text if str(source) in text else f"{source}: {text}"
    where = ""
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) != str(source):
        name = Path(str(exc.filename))
        where = f" ({name.parent})" if name.name.startswith(".") and ".tmp" in name.name else f" ({name})"  # not a temp name
    if isinstance(exc, PermissionError):
        return f"{source}: permission denied{where or ' (the file cannot be read)'}"
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return (f"{source}: no space left on device while writing the outputs{where}; nothing partial was kept. "
                f"Free some space and run again")
    if isinstance(exc, EXPECTED_OS_ERRORS):
        return f"{source}: {exc.strerror or exc}{where}"
    return f"{source}: unexpected {type(exc).__name__}: {exc}"


def run_each(items: Iterable[T], job: Callable[[T], FileOutcome],
             on_done: Callable[[FileOutcome], None] | None = None) -> list[FileOutcome]:
    """Run ``job`` on every item; an error becomes that item's failed outcome (an unexpected one
    is logged with its traceback) and the loop goes on. Ctrl-C still stops the run."""
    outcomes = []
    for item in items:
        start = time.perf_counter()
        try:
            outcome = job(item)
        except Exception as exc:
            if not is_expected(exc):
                log.exception("unexpected failure on %s", item)
            outcome = FileOutcome(str(item), error=error_message(exc, item), seconds=time.perf_counter() - start)
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return outcomes
