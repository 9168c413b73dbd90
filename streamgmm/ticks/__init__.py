"""The tick path, Kafka-free: what the service and ``streamgmm replay`` both run per record.

bytes -> :mod:`.decode` (a validated :class:`~.tick.Tick`, or a :class:`~.tick.DeadLetter`
naming why not) -> :mod:`.rules` (the per-key rules: ordering, duplicates, time jumps, model
rejections, the emit policy; each key's run of ticks through its detector in one call, with the
key's :mod:`.keystate`) -> :mod:`.encode` (the output record's JSON bytes). :mod:`.tick` holds
the records that travel along it. The settings come from :mod:`streamgmm.settings`; what talks
to Kafka (clients, sink, changelog, metrics) is in :mod:`streamgmm.service`.
"""
