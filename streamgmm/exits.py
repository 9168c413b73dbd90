"""Exit codes of the ``streamgmm`` commands, named once."""

__all__ = ["EXIT_FAILURE", "EXIT_USAGE"]

#: The command ran and failed: Kafka unreachable or refusing records, a fatal service error (a
#: changelog record that cannot be restored, with ``on_bad_snapshot = "fail"``), a demo whose
#: service did not process every tick.
EXIT_FAILURE = 1
#: The command cannot run as asked, and what was given must change: a bad setting (also one
#: found only at start, such as a metrics port in use), an unusable input file, an optional
#: dependency that is not installed. The same code argparse uses for a bad command line.
EXIT_USAGE = 2
