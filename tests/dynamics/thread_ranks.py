"""Ranks as threads in one process: an in-process stand-in for an MPI communicator (the
propagator only uses ``allgather`` and ``size``), for 1-vs-N-rank identity tests."""

import threading


class ThreadComm:
    """``size`` ranks as threads; ``allgather`` through a barrier."""

    def __init__(self, rank, size, slots, barrier):
        self.rank, self.size, self._slots, self._barrier = rank, size, slots, barrier

    def allgather(self, obj):
        self._slots[self.rank] = obj
        self._barrier.wait()
        out = list(self._slots)
        self._barrier.wait()
        return out


def run_on_thread_ranks(size, work):
    """Run ``work(rank, comm)`` on ``size`` thread ranks; returns their results in rank order."""
    slots, barrier, out = [None] * size, threading.Barrier(size), [None] * size

    def rank(r):
        out[r] = work(r, ThreadComm(r, size, slots, barrier))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out
