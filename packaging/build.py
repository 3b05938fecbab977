"""Build nodegraph's installers from this checkout (packaging/build.sh runs this with the system's python3).

    packaging/build.sh [--torch cpu|cu126|cu128|...] [--torch-index URL] [--formats deb,tar,appimage] [--reuse-venv]

1. A build environment of its own (build/packaging/venv-<torch>): torch of the chosen variant first, checked to be
   that variant (a CUDA build is never silently replaced by a CPU one, nor the reverse), then nodegraph itself
   (a normal, non-editable install) and the pinned bundler (packaging/requirements-build.txt).
2. PyInstaller (packaging/nodegraph.spec) freezes it into one folder with its own Python, torch and Qt.
3. The installers: on Linux (packaging/linux_packages.py) a .deb, a portable .tar.gz and, where appimagetool is
   installed, an AppImage; on Windows a set-up program (Inno Setup, packaging/windows/nodegraph.iss); on macOS the
   .app in a .dmg. dist/SHA256SUMS lists them. Only the Linux ones are built and tested on the project's machines;
   .github/workflows/installers.yml builds the others.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
WORK = ROOT / "build" / "packaging"
DIST = ROOT / "dist"

#: The spandrel release the installers ship (the README's test command installs the same).
SPANDREL = "spandrel==0.4.2"
#: The torch release the installers ship (the one the test suite runs on).
TORCH_VERSION = "2.13.0"
#: Where each variant's wheels come from: PyTorch's own index per variant ("cpu", "cu128", "rocm6.4", …).
TORCH_INDEX = "https://download.pytorch.org/whl/{variant}"
VARIANT = re.compile(r"cpu|cu\d{3}|rocm\d+(\.\d+)*|mps")


def log(message: str) -> None:
    print(f"[build] {message}", flush=True)


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    log("$ " + " ".join(map(str, command)))
    return subprocess.run(command, check=True, **kwargs)


def version() -> str:
    """nodegraph's version, read from the one place that defines it."""
    text = (ROOT / "nodegraph" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        raise SystemExit("build: no __version__ in nodegraph/__init__.py")
    return match.group(1)


def commit() -> str | None:
    """The checkout's commit (short), when this is a git checkout."""
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def torch_requirement(variant: str) -> str:
    """The exact torch to install: PyTorch's Linux and Windows wheels carry the variant as a local version
    (2.13.0+cpu, 2.13.0+cu128), so pinning it makes pip take that build or fail; macOS has one build (MPS)."""
    return f"torch=={TORCH_VERSION}" if variant == "mps" else f"torch=={TORCH_VERSION}+{variant}"


def reachable(url: str) -> bool:
    """Whether the index's host resolves (an index that cannot be reached makes pip retry for minutes)."""
    host = urlparse(url).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def make_environment(variant: str, index: str | None, reuse: bool) -> tuple[Path, str]:
    """The build environment with torch (checked), nodegraph and the bundler; returns its python and the torch
    version in it."""
    venv = WORK / f"venv-{variant}"
    python = venv_python(venv)
    if not (reuse and python.exists()):
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)])
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
        torch = [*pip, torch_requirement(variant)]
        if variant != "mps":
            index = index or TORCH_INDEX.format(variant=variant)
            if reachable(index):
                torch += ["--extra-index-url", index]
            else:
                log(f"{index} cannot be reached: taking {torch_requirement(variant)} from pip's configured sources")
        run(torch)
        run([*pip, "-r", str(PACKAGING / "requirements-build.txt")])
        # spandrel (upscale models) without its torchvision requirement, which would replace the CPU torch with a
        # CUDA one (see pyproject.toml); nodegraph runs it without torchvision.
        run([*pip, "--no-deps", SPANDREL])
        run([*pip, str(ROOT)])
    return python, check_torch(python, variant)


def check_torch(python: Path, variant: str) -> str:
    """Fail unless the environment's torch is the asked variant; returns its version."""
    probe = ("import json, torch; print(json.dumps([torch.__version__, torch.version.cuda, "
             "getattr(torch.version, 'hip', None)]))")
    found, cuda, hip = json.loads(subprocess.run([str(python), "-c", probe], check=True, capture_output=True,
                                                 text=True).stdout)
    if variant.startswith("cu"):
        wanted = f"{variant[2:-1]}.{variant[-1]}"
        ok = cuda == wanted
    elif variant.startswith("rocm"):
        ok = hip is not None
    else:
        ok = cuda is None and hip is None
    if not ok:
        raise SystemExit(f"build: asked for the {variant} variant, but the environment has torch {found} "
                         f"(CUDA {cuda}, ROCm {hip})")
    log(f"torch {found} (CUDA {cuda}, ROCm {hip}) — the {variant} variant")
    return found


def freeze(python: Path, variant: str, torch_version: str) -> Path:
    """Run PyInstaller; returns the app folder (…/nodegraph holding the `nodegraph` program)."""
    from_root = {"cwd": ROOT}
    stage = WORK / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    run([str(python), str(PACKAGING / "icons.py"), str(stage)], stdout=subprocess.DEVNULL, **from_root)
    record = subprocess.run(
        [str(python), "-c", "import json, sys; from nodegraph.build_info import build_record; "
                            "print(json.dumps(build_record(*sys.argv[1:])))", variant, torch_version, commit() or ""],
        check=True, capture_output=True, text=True, cwd=WORK).stdout
    (stage / "build.json").write_text(record, encoding="utf-8")
    app_dir = WORK / "app"
    shutil.rmtree(app_dir, ignore_errors=True)
    env = {**os.environ, "NODEGRAPH_BUILD_STAGE": str(stage), "PYTHONNOUSERSITE": "1"}
    run([str(python), "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", str(app_dir),
         "--workpath", str(WORK / "pyinstaller"), str(PACKAGING / "nodegraph.spec")], env=env, cwd=WORK)
    bundle = app_dir / "nodegraph"
    internal = bundle / "_internal"
    # The built-in node pack is imported from its source files: give it bytecode the bundled Python trusts as is
    # (the folder is read-only once installed, and the app never writes caches into it).
    run([str(python), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
         str(internal / "nodegraph" / "nodes")])
    return bundle


def build_windows_installer(bundle: Path, version_: str, variant: str) -> list[Path]:
    """The set-up program (Inno Setup; packaging/windows/nodegraph.iss) — made where Inno Setup is installed."""
    iscc = shutil.which("iscc") or shutil.which("ISCC")
    default = Path(os.environ.get("PROGRAMFILES(X86)", r"C:\Program Files (x86)")) / "Inno Setup 6" / "ISCC.exe"
    if iscc is None and default.is_file():
        iscc = str(default)
    if iscc is None:
        log("Inno Setup is not installed: the app folder is built, the set-up program is not")
        return []
    run([iscc, f"/DAppVersion={version_}", f"/DVariant={variant}", f"/DSourceDir={bundle}",
         f"/DIconFile={WORK / 'stage' / 'nodegraph.ico'}", f"/DOutputDir={DIST}",
         str(PACKAGING / "windows" / "nodegraph.iss")])
    return [DIST / f"nodegraph-{version_}-windows-x64-{variant}-setup.exe"]


def build_macos_dmg(app: Path, version_: str) -> list[Path]:
    """nodegraph.app in a disk image with a link to /Applications to drag it onto (hdiutil, part of macOS)."""
    folder = WORK / "dmg"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copytree(app, folder / app.name, symlinks=True)
    (folder / "Applications").symlink_to("/Applications")
    dmg = DIST / f"nodegraph-{version_}-macos-{platform.machine()}.dmg"
    run(["hdiutil", "create", "-volname", "nodegraph", "-srcfolder", str(folder), "-ov", "-format", "UDZO",
         str(dmg)])
    return [dmg]


def write_checksums(artifacts: list[Path]) -> Path:
    """SHA256SUMS beside the artifacts (`sha256sum -c SHA256SUMS` checks them)."""
    lines = []
    for artifact in artifacts:
        digest = hashlib.sha256()
        with artifact.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        lines.append(f"{digest.hexdigest()}  {artifact.name}")
    path = DIST / "SHA256SUMS"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build nodegraph's installers into dist/.")
    default_variant = "mps" if sys.platform == "darwin" else "cpu"
    parser.add_argument("--torch", default=default_variant, metavar="VARIANT",
                        help=f"torch build to ship: cpu, cu126, cu128, rocm6.4, … (default {default_variant})")
    parser.add_argument("--torch-index", metavar="URL", help="where to get that torch (default: PyTorch's index "
                                                            "for the variant)")
    parser.add_argument("--formats", default="deb,tar,appimage",
                        help="Linux artifacts to make (default: deb,tar,appimage; appimage only where appimagetool "
                             "is installed)")
    parser.add_argument("--reuse-venv", action="store_true", help="keep an existing build environment")
    args = parser.parse_args(argv)
    if not VARIANT.fullmatch(args.torch):
        parser.error(f"--torch {args.torch!r}: expected cpu, cuXYZ, rocmX.Y or mps")
    if (args.torch == "mps") != (sys.platform == "darwin"):
        parser.error("--torch mps is the macOS build, and the only one there")
    began = time.monotonic()
    python, torch_version = make_environment(args.torch, args.torch_index, args.reuse_venv)
    bundle = freeze(python, args.torch, torch_version)
    log(f"app folder: {bundle} ({time.monotonic() - began:.0f} s so far)")
    DIST.mkdir(exist_ok=True)
    if sys.platform.startswith("linux"):
        sys.path.insert(0, str(PACKAGING))
        from linux_packages import build_linux_packages

        formats = {name.strip() for name in args.formats.split(",") if name.strip()}
        artifacts = build_linux_packages(bundle, version(), args.torch, platform.machine(), formats, DIST, WORK)
    elif sys.platform == "win32":
        artifacts = build_windows_installer(bundle, version(), args.torch)
    else:
        artifacts = build_macos_dmg(bundle.parent / "nodegraph.app", version())
    if artifacts:
        artifacts.append(write_checksums(artifacts))
    for artifact in artifacts:
        log(f"wrote {artifact.relative_to(ROOT)} ({artifact.stat().st_size / 1e6:.0f} MB)")
    log(f"done in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
