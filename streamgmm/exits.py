"""Exit codes of the ``streamgmm`` commands, and how Ctrl-C and SIGTERM stop them, named once."""

from __future__ import annotations

import signal
import threading

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "interrupt_on_stop_signals"]

#: The command ran and failed: Kafka unreachable or refusing records, a fatal service error (a
#: changelog record that cannot be restored, with ``on_bad_snapshot = "fail"``), a demo whose
#: service did not process every tick.
EXIT_FAILURE = 1
#: The command cannot run as asked, and what was given must change: a bad setting (also one
#: found only at start, such as a metrics port in use), an unusable input file, an optional
#: dependency that is not installed. The same code argparse uses for a bad command line.
EXIT_USAGE = 2


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def interrupt_on_stop_signals() -> None:
    """Make Ctrl-C (SIGINT) and SIGTERM raise :class:`KeyboardInterrupt` in the main thread.

    The commands that run until stopped (``broker``, ``demo``, ``consume --follow``) end on
    either signal the same way: their ``except KeyboardInterrupt`` stops what they started and
    exits 0. SIGINT is installed explicitly because a process started in the background of a
    script inherits SIGINT ignored, and Python then leaves it ignored: Ctrl-C (or a supervisor's
    SIGINT) would not stop it. Off the main thread (the demo run inside another program) it does
    nothing: only the main thread may install signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
