"""The Kafka service, named along its data path (see docs/service.md).

decode -> apply (per-key tick path) -> encode -> sink, with per-key state in the keystore going
to the changelog through snapshot and checkpoint; the runner polls, handles rebalances and owns
the clients; config, kafka_io and metrics serve them all.

Submodules are imported on demand so that, for example, reading the configuration does not
load kafka-python.
"""
