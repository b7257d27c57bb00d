"""``python -m s3pool_plugins``: the ``s3pool`` command."""

from s3pool_plugins.cli import main

raise SystemExit(main())
