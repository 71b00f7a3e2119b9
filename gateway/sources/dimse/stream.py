"""Plumbing between `DimseSource`'s association threads and the event loop.

`Job` lets a call cancelled on the event loop (the guard's deadline, a caller
going away) abort its association in the worker thread. `GetStream` carries
the instances of one C-GET from the association thread to the caller through
a bounded `asyncio.Queue`: the C-STORE handler blocks while the queue is full,
so the SCP waits for a slow caller and a study is never held in memory. A
caller that stops early gets the C-GET cancelled, not the association aborted
(pynetdicom's reactor raises when a handler answers on an aborted association).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from dataclasses import dataclass

from pynetdicom import evt
from pynetdicom.association import Association

from gateway.core.errors import SourceError, SourceTimeout
from gateway.sources.dimse.assoc import GET_MESSAGE_ID, STUDY_GET, SubOperations

QUEUE_DEPTH = 2


class Job:
    """The association of one blocking call, so a cancelled call can abort it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._assoc: Association | None = None
        self.cancelled = False

    def attach(self, assoc: Association, source: str) -> None:
        """Remember `assoc`; abort it at once if the call was already cancelled."""
        with self._lock:
            if not self.cancelled:
                self._assoc = assoc
                return
        assoc.abort()
        raise SourceTimeout(source, "cancelled while associating")

    def detach(self) -> None:
        """Forget the association (it is being released)."""
        with self._lock:
            self._assoc = None

    def cancel(self) -> None:
        """Mark the call cancelled and abort its association, without blocking."""
        with self._lock:
            self.cancelled = True
            assoc, self._assoc = self._assoc, None
        if assoc is not None:
            assoc.abort(block=False)


@dataclass
class End:
    """The end of a C-GET: an error, or the sub-operation counts."""

    error: SourceError | None
    outcome: SubOperations | None


class GetStream:
    """Instances of one C-GET, handed from the association thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[bytes | End] = asyncio.Queue(maxsize=QUEUE_DEPTH)
        self.closed = threading.Event()
        self.received = 0
        self._cancelled = False

    def on_store(self, event: evt.Event) -> int:
        """EVT_C_STORE handler: blocks until the caller has room (back-pressure).

        Once the caller has gone away, the C-GET is cancelled (C-CANCEL, once)
        and every further instance refused: the association stays usable and
        is released normally.
        """
        if self.closed.is_set() or not self._put(event.encoded_dataset(include_meta=True)):
            if not self._cancelled:
                self._cancelled = True
                with contextlib.suppress(Exception):  # best effort; abort is the fallback
                    event.assoc.send_c_cancel(GET_MESSAGE_ID, query_model=STUDY_GET)
            return 0xA700  # out of resources
        self.received += 1
        return 0x0000

    def finish(self, error: SourceError | None, outcome: SubOperations | None) -> None:
        """Tell the caller the C-GET is over (from the association thread)."""
        self._put(End(error, outcome))

    def _put(self, item: bytes | End) -> bool:
        put = self.queue.put(item)
        try:
            fut = asyncio.run_coroutine_threadsafe(put, self.loop)
        except RuntimeError:  # the loop is gone
            put.close()
            return False
        while True:
            try:
                fut.result(timeout=0.1)
                return True
            except concurrent.futures.TimeoutError:
                if self.closed.is_set():
                    fut.cancel()
                    return False
            except concurrent.futures.CancelledError:
                return False
