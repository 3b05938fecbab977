"""The desktop app: the main window, the NodeGraphQt adapter and the run worker (the only package importing Qt)."""
