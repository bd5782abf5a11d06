"""`python -m memsim` runs the command line."""

from memsim.cli import main

raise SystemExit(main())
