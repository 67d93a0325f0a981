"""``python -m kexue ARGS`` runs the ``kexue`` command, as the installed ``kexue`` script does."""

from .cli import main

raise SystemExit(main())
