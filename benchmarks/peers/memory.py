"""Peak memory of a process tree: PSS summed over the process and all its descendants.

PSS (proportional set size, from ``/proc/<pid>/smaps_rollup`` through psutil) charges a page
shared by n processes 1/n to each, so the sum counts shared pages (the model's weights mapped by
several processes, Ray's shared-memory object store) once. The tree is walked afresh at every
sample, so workers started later (Ray's actors) are included.
"""

from __future__ import annotations

import threading

import psutil


def tree_pss_bytes(pid: int) -> tuple[int, int]:
    """``(PSS summed over pid and its descendants, number of processes)`` right now."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    total, count = 0, 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # exited between the walk and the read
    return total, count


class PeakTreeMemory:
    """Samples :func:`tree_pss_bytes` of ``pid`` every ``interval_s`` in a thread; keeps the peak.

    Args:
        pid: Root of the process tree.
        interval_s: Seconds between samples.
    """

    def __init__(self, pid: int, interval_s: float = 0.2):
        self.pid = pid
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakTreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        """Take one sample now."""
        total, count = tree_pss_bytes(self.pid)
        self.peak_bytes = max(self.peak_bytes, total)
        self.peak_processes = max(self.peak_processes, count)
