"""What keeps the emulator's endpoint serviceable under load or abuse: a bounded pool of
connection workers, and a per-address delay on failed logins."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

IDLE_EXIT_S = 2.0  # a worker with nothing to do this long ends (a new one starts on demand)


class ConnectionPool:
    """Serves accepted connections on at most `size` threads; `backlog` more wait for a
    worker; beyond that a connection is refused (`refuse`). When every worker is busy, the
    longest idle keep-alive connection (`evict`) is closed to make room, as HTTP servers do."""

    def __init__(
        self,
        serve: Callable[[Any, Any], None],
        refuse: Callable[[Any], None],
        evict: Callable[[], bool],
        *,
        size: int = 32,
        backlog: int = 64,
        name: str = "dmh-http",
    ) -> None:
        if size < 1 or backlog < 0:
            raise ValueError(f"pool size {size} must be ≥ 1 and backlog {backlog} ≥ 0")
        self._serve = serve
        self._refuse = refuse
        self._evict = evict
        self._size = size
        self._name = name
        self._pending: queue.Queue[tuple[Any, Any] | None] = queue.Queue(maxsize=backlog or 1)
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._idle = 0
        self._closed = False

    @property
    def workers(self) -> int:
        with self._lock:
            return len(self._workers)

    @property
    def queued(self) -> int:
        return self._pending.qsize()

    def submit(self, request: Any, address: Any) -> None:
        with self._lock:
            if self._closed:
                self._refuse(request)
                return
            if self._idle == 0 and len(self._workers) < self._size:
                self._start_worker()
            saturated = self._idle == 0 and len(self._workers) >= self._size
        if saturated and self._evict():
            log.debug("every connection worker busy: closed the longest idle connection")
        try:
            self._pending.put_nowait((request, address))
        except queue.Full:
            log.warning("emulator busy: refused a connection from %s", address[0])
            self._refuse(request)

    def close(self, timeout: float) -> None:
        """Refuse what waits, stop the workers (their connections must be shut already)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        while True:
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._refuse(item[0])
        for _ in workers:
            try:
                self._pending.put_nowait(None)
            except queue.Full:
                break
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _start_worker(self) -> None:
        worker = threading.Thread(target=self._work, name=self._name, daemon=True)
        self._workers.add(worker)
        self._idle += 1
        worker.start()

    def _work(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                try:
                    item = self._pending.get(timeout=IDLE_EXIT_S)
                except queue.Empty:
                    with self._lock:
                        if self._pending.empty():  # else: work arrived as we timed out
                            return
                    continue
                if item is None:
                    return
                with self._lock:
                    self._idle -= 1
                try:
                    self._serve(*item)
                finally:
                    with self._lock:
                        self._idle += 1
        finally:
            with self._lock:
                self._workers.discard(me)
                self._idle -= 1


@dataclass
class _Failures:
    count: int
    last: float
    waiting: int = 0  # failed attempts being delayed right now


class AuthThrottle:
    """Failed logins from one address are answered after a delay that doubles with each
    failure (`base`, 2·`base`, … up to `cap` seconds); a success, or `forget` seconds
    without a failure, starts it over. While one failure of an address waits out its delay,
    further attempts from that address are turned away without checking their password, so
    guessing can go no faster than the delay, whatever the number of connections."""

    def __init__(
        self,
        base: float = 0.25,
        cap: float = 8.0,
        forget: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self.cap = cap
        self.forget = forget
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, _Failures] = {}

    def busy(self, address: str) -> bool:
        """True while a failed attempt of `address` is being delayed."""
        with self._lock:
            entry = self._failures.get(address)
            return entry is not None and entry.waiting > 0

    def delay_for(self, address: str) -> float:
        """The delay the next failure of `address` would get."""
        with self._lock:
            entry = self._current(address)
            return self._delay(entry.count + 1 if entry else 1)

    def failed(self, address: str) -> float:
        """Count a failure; returns the delay to apply before answering it."""
        now = self._clock()
        with self._lock:
            entry = self._current(address)
            if entry is None:
                entry = self._failures[address] = _Failures(0, now)
            entry.count += 1
            entry.last = now
            return self._delay(entry.count)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def wait(self, address: str, seconds: float) -> None:
        """Sleep out a failure's delay, marked as waiting for `busy`."""
        with self._lock:
            entry = self._failures.get(address)
            if entry is not None:
                entry.waiting += 1
        try:
            time.sleep(seconds)
        finally:
            with self._lock:
                entry = self._failures.get(address)
                if entry is not None:
                    entry.waiting = max(0, entry.waiting - 1)

    def _current(self, address: str) -> _Failures | None:
        entry = self._failures.get(address)
        if entry is not None and entry.waiting == 0 and self._clock() - entry.last > self.forget:
            del self._failures[address]
            return None
        if len(self._failures) > 4096:  # bound the table: drop what is old enough to forget
            cutoff = self._clock() - self.forget
            for key in [k for k, v in self._failures.items() if v.last < cutoff and not v.waiting]:
                del self._failures[key]
        return entry

    def _delay(self, count: int) -> float:
        return float(min(self.cap, self.base * 2 ** (count - 1)))
