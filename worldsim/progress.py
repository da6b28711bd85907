"""Progress bars on stderr, drawn by tqdm: done/total, rate, time left, and a line of text (loss, tokens/s).

`Progress` keeps the small API worldsim's loops use, `update(done)` with the count done so far (not an increment),
so a loop that resumes or counts frames across worker processes reports what it knows without keeping a delta.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_EVERY_S = 10.0  # when stderr is a log file, not a terminal: a line every 10 s, not a flood


class Progress:
    def __init__(self, total: int, label: str, unit: str = "steps", every_s: float = 0.2, initial: int = 0):
        """`initial`: work already done before this run (a resumed run), left out of the rate. `every_s`: the
        shortest time between two redraws on a terminal."""
        self.bar = tqdm(total=total, desc=label, unit=f" {unit}", initial=initial, file=sys.stderr,
                        mininterval=every_s if sys.stderr.isatty() else LOG_EVERY_S, dynamic_ncols=True,
                        leave=True)

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        if extra:
            self.bar.set_postfix_str(extra, refresh=False)
        self.bar.update(done - self.bar.n)  # redraws only once mininterval has passed: cheap in a hot loop
        if force:
            self.bar.refresh()

    def close(self, done: int, extra: str = "") -> None:
        self.update(done, extra)
        self.bar.close()  # draws the final line
