"""A tiny deduplicating work queue with delayed items, like client-go's.

`add(key, delay=0)` schedules `key`; a key already scheduled keeps the earlier
due time. `get()` blocks until a key is due (or the queue is shut down ->
None); among the keys that are due, those `urgent(key)` says yes to come
first. Keys are hashable tuples chosen by the user of the queue.
"""
import heapq
import itertools
import threading
import time


class WorkQueue:
    def __init__(self, urgent=None):
        self.cond = threading.Condition()
        self.heap = []            # (due, seq, key)
        self.urgent = urgent
        self.hot = []             # (due, seq, key) of urgent keys, also in heap
        self.due = {}             # key -> due time of its live heap entry
        self.seq = itertools.count()
        self.closed = False

    def add(self, key, delay=0.0):
        due = time.monotonic() + max(0.0, delay)
        with self.cond:
            if self.closed:
                return
            cur = self.due.get(key)
            if cur is not None and cur <= due:
                return
            self.due[key] = due
            item = (due, next(self.seq), key)
            heapq.heappush(self.heap, item)
            if self.urgent is not None and self.urgent(key):
                heapq.heappush(self.hot, item)
            self.cond.notify()

    def get(self):
        with self.cond:
            while not self.closed:
                now = time.monotonic()
                while self.hot:
                    due, _, key = self.hot[0]
                    if self.due.get(key) != due:
                        heapq.heappop(self.hot)       # superseded or taken
                        continue
                    if due <= now:
                        heapq.heappop(self.hot)       # its heap entry goes as superseded
                        del self.due[key]
                        return key
                    break
                while self.heap:
                    due, _, key = self.heap[0]
                    if self.due.get(key) != due:
                        heapq.heappop(self.heap)      # superseded entry
                        continue
                    if due <= now:
                        heapq.heappop(self.heap)
                        del self.due[key]
                        return key
                    break
                self.cond.wait(self.heap[0][0] - now if self.heap else None)
            return None

    def pending(self):
        with self.cond:
            return len(self.due)

    def shutdown(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()
