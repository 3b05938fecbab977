"""The GPUs this machine has, found without torch: so a CPU-only build can say which GPU it leaves unused.

Pure Python (reads ``/proc`` or asks ``nvidia-smi``); never imports torch or Qt.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

NVIDIA_PROC = Path("/proc/driver/nvidia/version")


@functools.cache
def nvidia_gpu() -> str | None:
    """'NVIDIA GeForce RTX 4090 (driver 550.54.14)' when an NVIDIA GPU with its driver is present, else None.

    Asks ``nvidia-smi`` (Linux and Windows drivers install it); on Linux without it, the kernel module's version
    file still tells that a driver is loaded.
    """
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=10,
                                  creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except (OSError, subprocess.SubprocessError):
            done = None
        if done is not None and done.returncode == 0 and done.stdout.strip():
            name, _, driver = done.stdout.strip().splitlines()[0].partition(",")
            return f"{name.strip()} (driver {driver.strip()})" if driver.strip() else name.strip()
    if sys.platform.startswith("linux"):
        try:
            text = NVIDIA_PROC.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        match = re.search(r"Kernel Module(?: for [\w-]+)?\s+([\d.]+)", text)
        return f"an NVIDIA GPU (driver {match.group(1)})" if match else "an NVIDIA GPU"
    return None
