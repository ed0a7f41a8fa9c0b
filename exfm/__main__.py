"""`python -m exfm` is the `exfm` command."""

from exfm.cli import main

raise SystemExit(main())
