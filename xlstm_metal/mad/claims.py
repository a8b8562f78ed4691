"""Which process makes a run: a claim is an exclusive ``flock`` on ``<out>/.claims/<run key>``, held while the run
trains. The operating system drops the lock when its process ends, finished, crashed or killed, so a claim is never
stale: a run whose process died is free again and the next sweep makes it.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

CLAIMS_DIR = ".claims"


class Claim:
    """A held claim on one run; ``release()`` (or leaving the ``with`` block) frees it."""

    def __init__(self, fd: int, path: Path):
        self._fd, self.path = fd, path

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while locked: a waiting claimant then locks a fresh file
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_claim(out: Path, key: str) -> Claim | None:
    """The claim on run ``key`` in ``out``, or None while another process (or another claim here) holds it."""
    directory = Path(out) / CLAIMS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / key
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the holder may have released (and removed) the file between our open and our lock
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return Claim(fd, path)
        except FileNotFoundError:
            pass
        os.close(fd)
