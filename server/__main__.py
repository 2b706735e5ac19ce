"""``python -m server COMMAND``: the same as the ``cloison`` command."""

from server.cli import main

raise SystemExit(main())
