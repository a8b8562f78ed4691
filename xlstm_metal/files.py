"""Reading and writing user files safely: JSON read with the file named in every error, atomic file writes,
crash-safe directory swaps, and one writer per target.

A directory ``out`` is written as ``.out.tmp-<pid>-<random>``, renamed ``.out.new-…`` once complete, and then
swapped in (``out`` → ``.out.old-…``, ``.out.new-…`` → ``out``, the old one removed). At every instant a complete
version exists under ``out`` or, between the two renames, as ``.out.new-…`` / ``.out.old-…``: ``recover_dir`` (a
writer, under the lock) finishes an interrupted swap, ``current_dir`` (a reader) finds the version to read.
Only siblings with these names (see ``_ours``) are ever removed, and only by the lock's holder.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from .errors import InputError


class LockedError(InputError):
    """Another process is writing the same target."""


def read_json(path: Path, error: type[InputError] = InputError):
    """A JSON file's content; an unreadable, non-UTF-8 or invalid file raises ``error`` naming it."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte {exc.start}); the file is damaged") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise error(f"{path} could not be read: {exc.strerror or exc}") from None


def _sync(path: Path) -> None:
    """Flush ``path`` (a file or directory) to disk, best effort (some file systems refuse directory fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None], *, suffix: str = "") -> Path:
    """``write(tmp)`` fills a uniquely named temporary file next to ``path``, which then replaces ``path`` in one
    rename: readers see the old file or the new one, never a mix, and two writers never share a temporary."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file name to write")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the directory {path.parent} does not exist")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        _sync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync(path.parent)
    return path


def _ours(out: Path, kind: str = "tmp|new|old") -> list[Path]:
    """The siblings of ``out`` that this module names, newest first (directories only, never links). Earlier
    versions named them ``.out.tmp-<pid>`` / ``.out.old-<pid>``; such a directory counts as ours only when it
    holds nothing but the flat weight, JSON, YAML and SVG files a checkpoint has."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.({kind})-\d+(-[A-Za-z0-9_]+)?")
    if not out.parent.is_dir():
        return []
    found = []
    for p in out.parent.iterdir():
        match = pattern.fullmatch(p.name)
        if match and p.is_dir() and not p.is_symlink() and (match.group(2) or _checkpoint_files_only(p)):
            found.append(p)
    return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def _checkpoint_files_only(directory: Path) -> bool:
    return all(f.is_file() and not f.is_symlink() and f.suffix in (".safetensors", ".json", ".yaml", ".svg", ".jinja")
               for f in directory.iterdir())


def new_dir(out: Path) -> Path:
    """An empty, uniquely named directory next to ``out`` to build its next version in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))


def publish_dir(tmp: Path, out: Path) -> Path:
    """Make the complete directory ``tmp`` the new ``out`` (see the module docstring); if the final rename fails
    the previous ``out`` is put back and the error re-raised."""
    for f in tmp.iterdir():
        _sync(f)
    ready = tmp.with_name(f".{out.name}.new-" + tmp.name[len(f".{out.name}.tmp-"):])
    tmp.rename(ready)
    _sync(out.parent)
    old = None
    try:
        if out.exists() or out.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
            os.replace(out, old)  # an empty directory is replaced atomically
        os.rename(ready, out)
    except BaseException:
        if old is not None and not out.exists():
            os.rename(old, out)
        elif old is not None:  # the move aside failed: only the empty placeholder is there
            with contextlib.suppress(OSError):
                old.rmdir()
        shutil.rmtree(ready, ignore_errors=True)
        raise
    _sync(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


def write_dir(out: Path, fill: Callable[[Path], None]) -> Path:
    """Build ``out``'s next version: ``fill`` a new directory, then publish it; a failure leaves ``out`` as it was
    and removes the half-written directory."""
    tmp = new_dir(out)
    try:
        fill(tmp)
        return publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover_dir(out: Path) -> None:
    """Finish a swap that a crash interrupted (``out`` missing): the newest complete version becomes ``out``;
    then remove every leftover sibling of ours. Call with the lock held."""
    if not out.exists():
        for candidate in _ours(out, "new") + _ours(out, "old"):
            os.rename(candidate, out)
            break
    for stale in _ours(out):
        shutil.rmtree(stale, ignore_errors=True)


def current_dir(out: Path) -> Path:
    """The directory a reader should read: ``out``, or while a swap is under way (or after a crash in one) the
    complete version waiting next to it."""
    if out.is_dir():
        return out
    for candidate in _ours(out, "new") + _ours(out, "old"):
        return candidate
    return out


_held: dict[tuple, int] = {}  # (lock file, thread) -> fd: the thread that holds a lock may take it again


@contextlib.contextmanager
def writer_lock(out: Path) -> Iterator[None]:
    """Hold the one-writer lock of ``out`` (a ``.out.lock`` file next to it, holding the writer's pid, removed on
    release; the OS releases the lock if the process dies); a second writer gets a ``LockedError`` naming the
    holder's pid."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    key = (lock, threading.get_ident())
    if key in _held:
        yield
        return
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(f"{out} is being written by another writer (pid {holder}, lock file {lock}); wait "
                              "for it to finish or choose another directory") from None
        try:  # the holder before us may have removed the file between our open and our lock: then lock anew
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held[key] = fd
    try:
        yield
    finally:
        _held.pop(key)
        lock.unlink(missing_ok=True)  # removed while still held, so no one locks a file about to vanish
        os.close(fd)
