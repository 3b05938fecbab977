"""The frozen app's entry point (PyInstaller runs this file as ``__main__``): the same `nodegraph` command."""

import os
import sys

# The bundle's folder belongs to root or to the installer: never try to write bytecode caches into it (node packs
# are imported from source files, and a cache written there would outlive an uninstall).
sys.dont_write_bytecode = True

# Qt loads plugins from the bundle only: a QT_PLUGIN_PATH of the desktop's own Qt (KDE sets one) would load plugins
# built for another Qt into this one. (PyInstaller's PySide6 run-time hook did this too; nodegraph.spec leaves that
# hook out because it imports Qt at every start, even for `nodegraph --version`.)
os.environ["QT_PLUGIN_PATH"] = os.path.join(sys._MEIPASS, "PySide6", *([] if os.name == "nt" else ["Qt"]), "plugins")

from nodegraph.cli import main  # noqa: E402 (after the settings above)

sys.exit(main())
