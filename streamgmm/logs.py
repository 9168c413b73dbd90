"""Log set-up for the ``streamgmm`` processes: the CLI's and the service's producer process."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(level: str, process: str = "") -> None:
    """Log lines at ``level`` to stderr; ``process`` tags the lines of a helper process."""
    tag = f"[{process}]" if process else ""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s",
    )
    # kafka-python and librdkafka log every failed reconnect at ERROR; the runner already says
    # what is wrong in one line. At DEBUG the clients' own warnings come back for
    # troubleshooting.
    for client in ("kafka", "librdkafka"):
        logging.getLogger(client).setLevel(
            logging.WARNING if level.upper() == "DEBUG" else logging.CRITICAL
        )
