"""``python -m eagerstep`` runs the command line (see eagerstep.cli)."""

from eagerstep.cli import main

raise SystemExit(main())
