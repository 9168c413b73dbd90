"""The Kafka service: what talks to Kafka, around the Kafka-free tick path (see docs/service.md).

The runner polls the input topic and runs each partition's records through the tick path
(:mod:`streamgmm.ticks`: decode -> rules -> encode); output records and dead letters
(:mod:`.dead_letters`: their headers) leave through the sink (a producer in a child process);
per-key state is held in the keystore and goes to the changelog through snapshot (the
envelope) and checkpoint (flush, snapshots, offsets). kafka holds the clients (kafka-python or
confluent behind one interface), and metrics serves Prometheus. The settings are
:mod:`streamgmm.settings`.

Submodules are imported on demand so that, for example, the producer process does not load
the detectors.
"""
