"""GUI tests run offscreen; Qt must learn that before it is imported."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
