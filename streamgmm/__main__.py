"""``python3 -m streamgmm ...`` is ``streamgmm ...``, for when the scripts dir is not on PATH."""

from streamgmm.cli import main

raise SystemExit(main())
