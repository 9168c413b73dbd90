"""The Kafka service: configuration, codecs, metrics, runner (see docs/service.md).

Submodules are imported on demand so that, for example, reading the configuration does not
load kafka-python.
"""
