"""A bounded first-in first-out queue of incoming frames, drained by a thread of its own.

With `reliable_qos` (a bag replayed, every frame matters) the image and CameraInfo subscriptions
only put each message here and return (CameraInfo too: it keeps its order with the images, and
its callback never waits for a frame being taken in, which would hold up every callback of the
node's group): DDS hands the next one over at once, so the subscription's short
history never overflows while a frame is being converted and offered as a keyframe, or while
the node's other work (training's Python between torch calls, publishing products) holds the
interpreter. When the queue is full the oldest frame is dropped and counted: a bounded delay and
bounded memory, and /diagnostics says that frames were lost.
"""

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class FrameQueue:
    """`put` from the subscription callback; `handle(item)` runs in the queue's thread, in order,
    holding `handling` (whoever else holds it pauses the ingest: frames then only queue)."""

    def __init__(self, handle: Callable[[Any], None], size: int, name: str = "nvs_frame_queue") -> None:
        if size < 1:
            raise ValueError(f"a frame queue holds at least 1 frame, got {size}")
        self._handle = handle
        self._items: deque[Any] = deque()
        self._size = size
        self.dropped = 0
        """Frames dropped because the queue was full (items put with `frame`)."""
        self.max_length = 0
        """The longest the queue has been."""
        self._busy = False
        self.handling = threading.Lock()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        with self._wake:
            return len(self._items)

    def put(self, item: Any, frame: bool = True) -> None:
        """Queue `item`; `frame`: whether it counts in `dropped` if it is dropped (a CameraInfo
        does not: it comes again with the next frame)."""
        with self._wake:
            if len(self._items) >= self._size:
                if self._items.popleft()[0]:
                    self.dropped += 1
            self._items.append((frame, item))
            self.max_length = max(self.max_length, len(self._items))
            self._wake.notify()

    def idle(self) -> bool:
        """Nothing queued and nothing being handled."""
        with self._wake:
            return not self._items and not self._busy

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._items and not self._stop.is_set():
                    self._wake.wait()
                if self._stop.is_set():
                    return
                (_, item), self._busy = self._items.popleft(), True
            try:
                with self.handling:
                    self._handle(item)
            except Exception:  # noqa: BLE001 -- one bad frame must not stop the ingest
                log.exception("handling a queued frame failed")
            finally:
                with self._wake:
                    self._busy = False
