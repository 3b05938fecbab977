"""Allow `python -m nodegraph` as an alias of the `nodegraph` command."""

import sys

from nodegraph.cli import main

sys.exit(main())
