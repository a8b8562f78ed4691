"""Work spread over processes: ``run_processes`` starts ``count`` fresh (spawned) Python processes that each call
the same function, forwards the lines they emit to one ``progress`` callable, and raises the first error one of
them raises. A process that dies without an error (killed, out of memory) is reported as a line; the others go
on. Interrupting the parent (Ctrl-C) stops every process.
"""
from __future__ import annotations

import multiprocessing
import pickle
import queue as queue_module
from typing import Callable


def _child(target: Callable, args: tuple, index: int, queue) -> None:
    try:
        target(*args, emit=lambda line: queue.put(("line", line)), worker=index)
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # handed to the parent, which raises it
        try:
            error = pickle.loads(pickle.dumps(exc))
        except Exception:
            error = RuntimeError(f"worker {index}: {exc!r}")
        queue.put(("error", error))
    finally:
        queue.put(("done", index))


def run_processes(target: Callable, args: tuple, count: int, progress: Callable[[str], None]) -> None:
    """``target(*args, emit=..., worker=i)`` in ``count`` spawned processes (``target`` importable by name);
    returns when every one has ended."""
    ctx = multiprocessing.get_context("spawn")  # MLX's threads and device state do not survive fork
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(target, args, i, queue), daemon=True) for i in range(count)]
    for p in procs:
        p.start()
    done: set[int] = set()
    try:
        while len(done) < count:
            try:
                kind, payload = queue.get(timeout=1.0)
            except queue_module.Empty:
                for i, p in enumerate(procs):
                    if i not in done and not p.is_alive() and queue.empty():
                        done.add(i)
                        progress(f"worker {i} ended without finishing (exit code {p.exitcode}); its run was not "
                                 f"recorded: the same command makes it")
                continue
            if kind == "line":
                progress(payload)
            elif kind == "error":
                raise payload
            else:
                done.add(payload)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
