"""Exit codes of the `nodegraph` command."""

OK = 0
ERROR = 1  # an internal error, or a feature not available in this build
INVALID = 2  # an invalid workflow or command line
NODE_FAILED = 3  # a node failed while running
NO_DISPLAY = 4  # the desktop app cannot start: no display (Linux without X11 or Wayland, QT_QPA_PLATFORM unset)
OUT_OF_MEMORY = 5  # a node ran out of memory (RAM or GPU): a smaller image or batch, fp16 or the CPU may work
CANCELLED = 130  # the user pressed Ctrl+C
BROKEN_PIPE = 141  # standard output was closed early (`| head`): 128 + SIGPIPE, what a shell reports for `cat`
