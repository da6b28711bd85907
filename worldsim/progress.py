"""A one-line progress bar on stderr: done/total, rate, time left; plain lines when stderr is not a terminal."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, unit: str = "steps", every_s: float = 0.2, initial: int = 0):
        """`initial`: work already done before this run (a resumed run), left out of the rate."""
        self.total, self.label, self.unit, self.every_s, self.initial = total, label, unit, every_s, initial
        self.start = self._last = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_line_s = -1e9

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        elapsed = now - self.start
        rate = (done - self.initial) / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else float("inf")
        frac = min(done / self.total, 1.0) if self.total else 1.0
        bar = "#" * int(frac * 24) + "." * (24 - int(frac * 24))
        line = (f"{self.label} [{bar}] {done:,}/{self.total:,} {self.unit}  {rate:,.0f} {self.unit}/s  "
                f"{'left ' + _clock(left) if done < self.total else 'took ' + _clock(elapsed)}  {extra}")
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        elif force or now - self._last_line_s >= 10:  # logs: a line every 10 s, not a flood
            print(line, file=sys.stderr, flush=True)
            self._last_line_s = now

    def close(self, done: int, extra: str = "") -> None:
        self.update(done, extra, force=True)
        if self.tty:
            print(file=sys.stderr)


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
