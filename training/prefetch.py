"""Read the interactions file while the rest of the libraries load.

`recsvc-train fit` calls `start(data_dir)` first thing: it imports the reader (`training.io`) in the
calling thread, then a thread reads and parses the (by far largest) interactions file with arrow,
which releases the GIL, while the caller goes on importing scipy, implicit and the pipeline (the
reader is imported before the thread starts, so the two never wait on each other's imports).
`load_dataset` then `take`s the table instead of reading the file again, provided the file is
unchanged (size and mtime); otherwise, or if the early read failed, it reads the file itself and
reports any error as usual.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_jobs: dict[str, tuple[tuple[int, int], threading.Thread, dict]] = {}
NAMES = tuple("interactions" + s for s in (".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz"))


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _run(read, path: str, box: dict) -> None:
    try:
        box["table"] = read(path)
    except Exception as e:  # noqa: BLE001 - reported by the ordinary read that follows
        box["error"] = e


def start(data_dir: str) -> None:
    """Begin reading data_dir's interactions file on a daemon thread (nothing if absent or ambiguous)."""
    found = [p for n in NAMES if os.path.isfile(p := os.path.join(data_dir, n))]
    if len(found) != 1:
        return
    from training.io import _read

    path = os.path.abspath(found[0])
    box: dict = {}
    thread = threading.Thread(target=_run, args=(_read, path, box), name="recsvc-prefetch", daemon=True)
    with _lock:
        if path in _jobs:
            return
        _jobs[path] = (_stamp(path), thread, box)
    thread.start()


def take(path: str):
    """The table read early for `path` (a `training.io._Table`), or None: not started, failed, or the
    file changed since."""
    with _lock:
        job = _jobs.pop(os.path.abspath(path), None)
    if job is None:
        return None
    stamp, thread, box = job
    thread.join()
    try:
        same = _stamp(path) == stamp
    except OSError:
        return None
    return box.get("table") if same else None
