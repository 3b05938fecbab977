"""Exit codes of the `nodegraph` command."""

OK = 0
ERROR = 1  # an internal error, or a feature not available in this build
INVALID = 2  # an invalid workflow or command line
NODE_FAILED = 3  # a node failed while running
CANCELLED = 130  # the user pressed Ctrl+C
