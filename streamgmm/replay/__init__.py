"""``streamgmm replay FILE --output OUT``: the service's per-key tick path over a file, no Kafka.

Each row of a CSV or Parquet file of ticks (columns ``symbol, ts, price, volume`` for market
ticks; ``symbol, ts, <event fields>`` for event ticks; ``[input] key_field`` names another key
column, and ``--columns`` maps a file's own names; CSV delimited by commas, tabs, semicolons or
pipes) is turned into the JSON message that ``streamgmm produce`` would send, then goes
through the service's own steps (:mod:`streamgmm.ticks`): the same
:class:`~streamgmm.ticks.decode.TickDecoder` validation, the same per-key rules
(:class:`~streamgmm.ticks.rules.TickRules`: ordering, model rejections, emit policy, batching)
and the same output encoder. So for the same ticks a key's records are the Kafka path's, apart
from ``topic``, ``partition`` and ``offset``: replay writes the file name, partition -1 and the
0-based row number. Output is JSON lines, one output record per line, in row order. Rejected
rows are counted by reason and, with ``--dead-letters FILE``, written there as JSON lines.

The replay path, one module per step: :mod:`.files` (rows of a file) -> :mod:`.message` (a row
as the message ``produce`` sends) or :mod:`.columns` (a CSV chunk decoded a column at a time)
-> :mod:`.run` (the tick path, chunk by chunk; records written in row order), with
:mod:`.progress` and the command, :mod:`.cli`. Nothing here talks to Kafka or imports
:mod:`streamgmm.service`.
"""

from streamgmm.replay.cli import main
from streamgmm.replay.files import CHUNK_ROWS, ReplayError, TickFile, count_rows, iter_rows
from streamgmm.replay.message import row_message
from streamgmm.replay.run import PARTITION, ReplaySummary, replay

__all__ = [
    "CHUNK_ROWS",
    "PARTITION",
    "ReplayError",
    "ReplaySummary",
    "TickFile",
    "count_rows",
    "iter_rows",
    "main",
    "replay",
    "row_message",
]
