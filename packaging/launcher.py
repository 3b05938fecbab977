"""The frozen app's entry point (PyInstaller runs this file as ``__main__``): the same `nodegraph` command."""

import sys

# The bundle's folder belongs to root or to the installer: never try to write bytecode caches into it (node packs
# are imported from source files, and a cache written there would outlive an uninstall).
sys.dont_write_bytecode = True

from nodegraph.cli import main  # noqa: E402 (after the flag above)

sys.exit(main())
