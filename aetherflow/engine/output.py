"""What step attempts wrote (``ctx.output``: the ``external.process`` pipes), kept in the
store for ``aetherflow runs logs``, where every host of a shared store can read it.

Per attempt and stream: the first ``HEAD_BYTES`` are stored as they come (whole lines, at
most every ``FLUSH_SECONDS``, so ``runs logs --follow`` sees a running step's output: the
writer is also called with an empty chunk while the command runs, see ``process.run_process``
``on_stream``, so nothing waits for the next output; no thread of its own); past
that only the last ``TAIL_BYTES`` are kept in memory and stored when the attempt ends, after a
line saying how many bytes in between were not kept. Text is decoded as UTF-8 (invalid bytes
replaced) and masked by the store like everything it writes; a line is never split across two
stored chunks unless it is longer than ``FLUSH_BYTES``, so a secret is masked whole.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aetherflow.state.store import OutputChunk, StateStore

__all__ = ["FLUSH_BYTES", "FLUSH_SECONDS", "HEAD_BYTES", "TAIL_BYTES", "OutputLog"]

HEAD_BYTES = 4 * 1024 * 1024
TAIL_BYTES = 1024 * 1024
FLUSH_SECONDS = 0.5
FLUSH_BYTES = 64 * 1024

_Key = tuple[str, str, int, str]  # job, step, attempt, stream


@dataclass(slots=True)
class _Stream:
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    pending: str = ""
    head: int = 0
    tail: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def feed(self, chunk: bytes) -> None:
        room = HEAD_BYTES - self.head
        if room > 0:
            take = chunk[:room]
            self.head += len(take)
            self.pending += self.decoder.decode(take)
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            excess = len(self.tail) - TAIL_BYTES
            if excess > 0:
                self.dropped += excess
                del self.tail[:excess]

    def take(self, final: bool) -> str:
        """What is ready to store: whole lines (everything when ``final`` or past FLUSH_BYTES)."""
        if final:
            text = self.pending + self.decoder.decode(b"", final=True)
            self.pending = ""
            if self.tail or self.dropped:
                if self.dropped:
                    text += f"{'' if not text or text.endswith(chr(10)) else chr(10)}[… {self.dropped} bytes not kept …]\n"
                text += codecs.decode(bytes(self.tail), "utf-8", "replace")
                self.tail.clear()
            return text
        end = self.pending.rfind("\n") + 1
        if end == 0 and len(self.pending) >= FLUSH_BYTES:
            end = len(self.pending)
        text, self.pending = self.pending[:end], self.pending[end:]
        return text


class OutputLog:
    """The captured output of one run's step attempts, written to its store. ``writer`` gives
    ``ctx.output`` for an attempt, ``finish`` stores the rest of that attempt's output, and
    ``close`` (at the run's end) stores everything left."""

    def __init__(self, store: StateStore, run_id: str, clock: Callable[[], float]) -> None:
        self._store = store
        self._run_id = run_id
        self._clock = clock
        self._lock = threading.Lock()
        self._streams: dict[_Key, _Stream] = {}

    def writer(self, job_id: str, step_id: str, attempt: int) -> Callable[[str, bytes], None]:
        """``write(stream, chunk)``; an empty chunk only gives a chance to store what is due."""
        last = [time.monotonic()]

        def write(stream: str, chunk: bytes) -> None:
            with self._lock:  # taken and written under one lock: chunks are stored in order
                if chunk:
                    key = (job_id, step_id, attempt, str(stream))
                    st = self._streams.get(key)
                    if st is None:
                        st = self._streams[key] = _Stream()
                    st.feed(chunk)
                now = time.monotonic()
                if now - last[0] < FLUSH_SECONDS:
                    return
                last[0] = now
                keys = [k for k in self._streams if k[:3] == (job_id, step_id, attempt)]
                self._write(self._chunks(keys, final=False))

        return write

    def finish(self, job_id: str, step_id: str, attempt: int) -> None:
        """Store what is left of one attempt's output (its tail too)."""
        with self._lock:
            keys = [k for k in self._streams if k[:3] == (job_id, step_id, attempt)]
            chunks = self._chunks(keys, final=True)
            for k in keys:
                del self._streams[k]
            self._write(chunks)

    def close(self) -> None:
        with self._lock:
            chunks = self._chunks(list(self._streams), final=True)
            self._streams.clear()
            self._write(chunks)

    def _chunks(self, keys: list[_Key], *, final: bool) -> list[OutputChunk]:
        now = self._clock()
        out = []
        for key in keys:
            text = self._streams[key].take(final)
            if text:
                job, step, attempt, stream = key
                out.append(OutputChunk(run_id=self._run_id, job_id=job, step_id=step, attempt=attempt, stream=stream,
                                       text=text, at=now))
        return out

    def _write(self, chunks: list[OutputChunk]) -> None:
        if chunks:
            self._store.append_output(self._run_id, chunks)
