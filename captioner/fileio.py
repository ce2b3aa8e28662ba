"""Atomic file output: every file captioner writes goes through here.

A file is written to a hidden temporary file beside its target, flushed to disk, then renamed
into place, so a crash, a kill or a full disk never leaves a half-written output, and readers
never see one. Without ``overwrite`` an existing target is never replaced.

A temporary file's name carries its writer's process id (``.NAME.PID-RANDOM.tmp``). One that a
killed process left behind (``kill -9`` allows no clean-up) is removed by the next process that
writes into that directory, once that writer is gone and the file has been still for
``STALE_TEMP_SEC``.

>>> with atomic_output(Path("out/clip.json")) as tmp:
...     tmp.write_text(text)            # renamed to out/clip.json only if this block succeeds
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from .errors import CaptionerError

StrPath = str | os.PathLike  # a file or directory path

log = logging.getLogger(__name__)

STALE_TEMP_SEC = 2.0  # a dead writer's temp file untouched this long is removed
# what reserve_temp_path names a temporary file: ".<target name>.<pid>-<8 hex digits>.tmp<suffix>"
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.[A-Za-z0-9]+)?$")
_swept: set[str] = set()  # directories this process has already cleaned (once each is enough)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; a no-op where directories cannot be opened (e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


def sweep_stale_temps(directory: Path) -> list[Path]:
    """Remove the temp files that killed writers left in ``directory`` (see the module notes);
    returns what was removed. Once per directory per process; never on Windows (no kill(pid, 0))."""
    key = str(Path(directory).resolve())
    if os.name == "nt" or key in _swept:
        return []
    if len(_swept) >= 4096:  # a long-running server writes into ever new request folders
        _swept.clear()
    _swept.add(key)
    removed, now = [], time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or int(match["pid"]) == os.getpid():
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < STALE_TEMP_SEC or _process_alive(int(match["pid"])):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    if removed:
        log.info("removed %d temp file(s) left in %s by a killed run", len(removed), directory)
    return removed


def reserve_temp_path(target: Path, suffix: str = ".tmp") -> Path:
    """Create an empty, uniquely named hidden file next to ``target`` and return its path.

    Created with O_EXCL and mode 0o666 so the process umask applies (``mkstemp`` would make
    it 0o600, and the renamed output would then be unreadable to e.g. a web server). Its name
    carries this process's id, so a later run can tell it from a live writer's.
    """
    sweep_stale_temps(target.parent)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise CaptionerError(f"{target.parent}: could not create a temporary file next to {target.name}")


def sweep_temp_files(directory: StrPath) -> list[Path]:
    """Remove every temporary file in ``directory`` (not recursive), whoever wrote it; returns
    them. Only call it when nothing else can be writing there (batch runs hold a lock)."""
    removed = []
    for path in Path(directory).glob(".*"):
        if _TEMP_NAME.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def unique_stem(name: str, used: set[str], *, untrusted: bool = True) -> str:
    """A not yet used file stem for ``name``'s outputs (``a.mp4`` twice -> ``a``, ``a-2``); ``used``
    holds the stems taken so far, lower-cased, and gets the new one. An ``untrusted`` name (an
    upload's, a URL's) keeps only letters, digits and ``-_.+``; a local file keeps its own stem,
    spaces, quotes and all (only path separators go). Never a hidden file."""
    raw = Path(name.replace("\\", "/")).stem.strip()
    if untrusted:
        stem = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in raw)
    else:
        stem = raw.replace("/", "_").replace("\0", "_")
    stem = stem.lstrip(".")[:120] or "video"
    candidate, n = stem, 2
    while candidate.lower() in used:
        candidate, n = f"{stem}-{n}", n + 1
    used.add(candidate.lower())
    return candidate


def commit_file(tmp: Path, target: Path, *, overwrite: bool) -> None:
    """Move a finished temporary file onto ``target`` (same directory) atomically.

    Without ``overwrite`` a hard link is used, which fails if ``target`` appeared meanwhile
    (e.g. two batch workers writing videos with the same stem): no silent clobbering. Where
    hard links are unsupported it falls back to check-then-rename.
    """
    if overwrite:
        os.replace(tmp, target)
    else:
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise CaptionerError(f"{target} exists; use --overwrite to replace it") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
                raise
            if target.exists():
                raise CaptionerError(f"{target} exists; use --overwrite to replace it") from None
            os.replace(tmp, target)
        else:
            tmp.unlink()
    _fsync_dir(target.parent)


def check_targets(paths: Iterable[Path], *, overwrite: bool) -> None:
    """Refuse (``CaptionerError``) if any target exists and ``overwrite`` is False, or is a directory."""
    for path in paths:
        if path.is_dir():
            raise CaptionerError(f"{path} is a directory; choose another output directory or name")
        if path.exists() and not overwrite:
            raise CaptionerError(f"{path} exists; use --overwrite to replace it")


@contextmanager
def atomic_output(target: StrPath, *, overwrite: bool = True, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path to write ``target``'s content to; on success it is fsynced and
    renamed onto ``target``, on any exception (KeyboardInterrupt included) it is deleted."""
    target = Path(target)
    check_targets([target], overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = reserve_temp_path(target, suffix)
    try:
        yield tmp
        _fsync_file(tmp)
        commit_file(tmp, target, overwrite=overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_staged(tmp: Path, content: str) -> None:
    with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def write_files_atomically(contents: dict[Path, str], *, overwrite: bool = False) -> list[Path]:
    """Write several text files all-or-nothing (as far as the filesystem allows).

    Checks every target first, stages every file as a temp file, then renames them in. On any
    failure the temp files are removed, and (without ``overwrite``) the files this call had
    already put in place are removed again, so nothing partial remains.
    """
    targets = list(contents)
    check_targets(targets, overwrite=overwrite)
    for directory in {t.parent for t in targets}:
        directory.mkdir(parents=True, exist_ok=True)
    staged: dict[Path, Path] = {}
    committed: list[Path] = []
    try:
        for target, content in contents.items():
            tmp = reserve_temp_path(target)
            staged[target] = tmp
            _write_staged(tmp, content)
        for target, tmp in staged.items():
            commit_file(tmp, target, overwrite=overwrite)
            committed.append(target)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        if not overwrite:  # only files this call created, so removing them loses nothing
            for target in committed:
                target.unlink(missing_ok=True)
        raise
    return targets


def file_sha256(path: StrPath, chunk_bytes: int = 1 << 20) -> str:
    """The hex sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
