"""The progress of a replay: a tqdm bar on a terminal when tqdm is installed, else a plain line.

A terminal gets its line redrawn in place; a log file a line every few seconds.
"""

from __future__ import annotations

import time
from typing import IO, Any

__all__ = ["Progress"]


class Progress:
    """Rows done out of ``total`` (None: unknown), shown on ``stream`` when ``enabled``."""

    def __init__(self, total: int | None, enabled: bool, stream: IO[str]) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.stream = stream
        self._bar: Any = None
        self._last = 0.0
        self._shown = -1
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        if enabled and self._tty:
            try:  # optional: pip install 'streamgmm[progress]'
                from tqdm import tqdm  # type: ignore[import-untyped, import-not-found, unused-ignore]
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, unit="rows", file=stream, desc="replay")

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        # A terminal gets a line redrawn in place; a log file a line every few seconds.
        if now - self._last >= (0.2 if self._tty else 5.0):
            self._last = now
            self._write()

    def _write(self, final: bool = False) -> None:
        if final and self._shown == self.done and not self._tty:
            return  # that very line is already in the log
        self._shown = self.done
        if self.total:
            text = f"replay: {self.done}/{self.total} rows ({100.0 * self.done / self.total:.0f}%)"
        else:
            text = f"replay: {self.done} rows"
        if self._tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            self._write(final=True)
