"""Settings: every setting declared once, read from defaults < file < environment < flags.

Kafka-free, shared by the service and ``streamgmm replay``/``produce``. One module per job:

- :mod:`.parsers`: value parsers (a raw value to a typed one, or what was expected);
- :mod:`.spec`: what a setting's declaration is, and :class:`~.spec.ConfigError`;
- :mod:`.service`: the declarations, the fields of the frozen
  :class:`~.service.Settings`;
- :mod:`.detector`: the ``[detector]`` settings, derived from the detector classes;
- :mod:`.table`: every setting in order and by name;
- :mod:`.layers`: :func:`~.layers.load_settings`, the layers and the checks across settings;
- :mod:`.flags`: the command-line layer's argparse helpers;
- :mod:`.render`: configs/default.toml and the docs table, made from the declarations.
"""
