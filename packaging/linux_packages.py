"""The Linux artifacts made from PyInstaller's app folder: a .deb (installed under /opt/nodegraph, with the command
on PATH, a desktop entry, the icon and the workflow file type), a portable .tar.gz, and an AppImage where
appimagetool is installed.

The .deb is assembled as a folder tree and packed by `dpkg-deb`, Debian's own tool. It has no maintainer scripts:
desktop-file-utils, hicolor-icon-theme and shared-mime-info refresh the menu, icon and file-type caches through dpkg
triggers, and the app writes nothing into its own folder, so `dpkg -r` removes every file and the package's record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LINUX = HERE / "linux"
ICON_SVG = ROOT / "resources" / "icons" / "nodegraph.svg"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
INSTALL_DIR = "opt/nodegraph"
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
#: Needed without being linked: the bundled fontconfig reads the system's font configuration, and this package
#: brings it with at least one font (an app without fonts draws no text).
EXTRA_DEPENDS = ("fontconfig-config",)
#: dpkg-deb's compression of the .deb. On the 1 GB CPU build (docs/benchmarks.md): zstd -10 gives 300 MB in about
#: 35 s; -19 gives 273 MB in about 5 minutes, xz -6 259 MB in 4 minutes: not worth the CI time.
DEB_COMPRESSION = ("-Zzstd", "-z10")
DESCRIPTION = """\
native node-graph app for Stable Diffusion
 Wire Load Checkpoint, CLIP Text Encode, UNet Sampler and VAE Decode (with LoRA,
 embedding, VAE and hypernetwork nodes) on a Qt canvas, and run the graph on your
 own computer. Opens AUTOMATIC1111 and ComfyUI model folders in place.
 .
 This build carries its own Python, PyTorch ({torch}) and Qt."""


def log(message: str) -> None:
    print(f"[linux] {message}", flush=True)


def elf_files(folder: Path) -> list[Path]:
    """Every ELF file (programs and shared libraries) under `folder`."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def library_dirs(bundle: Path) -> list[str]:
    """The bundle's folders holding shared libraries: where the frozen app finds them at run time."""
    return sorted({str(path.parent) for path in bundle.rglob("*.so*")} | {str(bundle / "_internal")})


def system_libraries(bundle: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """What the bundle takes from the system: {library path: a bundled file needing it} and the libraries that
    cannot be found at all ({name: [bundled files needing it]})."""
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(library_dirs(bundle))}
    needed: dict[str, str] = {}
    missing: dict[str, list[str]] = {}
    for elf in elf_files(bundle):
        done = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, env=env)
        for line in done.stdout.splitlines():
            name, arrow, target = line.strip().partition(" => ")
            if not arrow:
                continue
            target = target.split(" (")[0].strip()
            if target == "not found":
                missing.setdefault(name, []).append(str(elf.relative_to(bundle)))
            elif target and not Path(target).resolve().is_relative_to(bundle.resolve()):
                needed.setdefault(target, str(elf.relative_to(bundle)))
    return needed, missing


def owning_package(path: str) -> str | None:
    """The Debian package a system file belongs to (`dpkg -S`; merged /usr tried both ways)."""
    candidates = [path, str(Path(path).resolve())]
    candidates += [c.removeprefix("/usr") if c.startswith("/usr/") else "/usr" + c for c in list(candidates)]
    for candidate in candidates:
        done = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.split(":", 1)[0].strip()
    return None


def glibc_floor(elfs: list[Path]) -> str:
    """The newest GLIBC symbol version any bundled file needs (the oldest glibc the bundle runs on)."""
    versions = {"2.17"}
    for elf in elfs:
        done = subprocess.run(["readelf", "-V", "--wide", str(elf)], capture_output=True, text=True)
        versions.update(re.findall(r"Name: GLIBC_(\d+\.\d+(?:\.\d+)?)", done.stdout))
    return max(versions, key=lambda v: tuple(map(int, v.split("."))))


def debian_depends(bundle: Path) -> tuple[list[str], str]:
    """The .deb's Depends (the packages of the system libraries the bundle loads) and the glibc it needs.

    Fails, naming the packages to install on the build machine, when a library cannot be found: the build machine
    must hold every library users will need, or the computed Depends would miss it."""
    needed, missing = system_libraries(bundle)
    if missing:
        lines = "\n".join(f"  {name} (needed by {', '.join(users[:2])})" for name, users in sorted(missing.items()))
        raise SystemExit(f"build: libraries the app needs are not installed on this machine:\n{lines}\n"
                         "install them (Debian/Ubuntu: apt-get install the packages holding them) and build again")
    packages: set[str] = set()
    for path, user in sorted(needed.items()):
        package = owning_package(path)
        if package is None:
            raise SystemExit(f"build: {path} (needed by {user}) belongs to no Debian package on this machine")
        packages.add(package.split(":")[0])
    floor = glibc_floor(elf_files(bundle))
    packages.discard("libc6")
    return [f"libc6 (>= {floor})", *sorted(packages | set(EXTRA_DEPENDS))], floor


def installed_size_kib(folder: Path) -> int:
    return sum(path.lstat().st_size for path in folder.rglob("*")) // 1024 + 1


def stage_desktop_files(usr_share: Path, icons: Path) -> None:
    """The desktop entry, the icons (SVG and PNGs in the hicolor theme) and the workflow MIME type."""
    (usr_share / "applications").mkdir(parents=True)
    shutil.copy(LINUX / "nodegraph.desktop", usr_share / "applications" / "nodegraph.desktop")
    (usr_share / "mime" / "packages").mkdir(parents=True)
    shutil.copy(LINUX / "nodegraph-mime.xml", usr_share / "mime" / "packages" / "nodegraph.xml")
    scalable = usr_share / "icons" / "hicolor" / "scalable" / "apps"
    scalable.mkdir(parents=True)
    shutil.copy(ICON_SVG, scalable / "nodegraph.svg")
    for size in ICON_SIZES:
        target = usr_share / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        target.mkdir(parents=True)
        shutil.copy(icons / f"nodegraph-{size}.png", target / "nodegraph.png")


def build_deb(bundle: Path, version: str, variant: str, machine: str, torch: str, icons: Path, work: Path,
              dist: Path) -> Path:
    """nodegraph_<version>+<variant>_<arch>.deb."""
    root = work / "deb"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(bundle, root / INSTALL_DIR, symlinks=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "nodegraph").symlink_to(f"/{INSTALL_DIR}/nodegraph")
    stage_desktop_files(root / "usr" / "share", icons)
    doc = root / "usr" / "share" / "doc" / "nodegraph"
    doc.mkdir(parents=True)
    shutil.copy(LINUX / "copyright", doc / "copyright")
    depends, floor = debian_depends(bundle)
    log(f"Depends (glibc >= {floor}): {', '.join(depends)}")
    control = root / "DEBIAN"
    control.mkdir()
    fields = {
        "Package": "nodegraph",
        "Version": f"{version}+{variant}",
        "Architecture": DEB_ARCH.get(machine, machine),
        "Maintainer": "nodegraph developers <nodegraph@users.noreply.github.com>",
        "Installed-Size": str(installed_size_kib(root)),
        "Depends": ", ".join(depends),
        "Recommends": "shared-mime-info, desktop-file-utils, hicolor-icon-theme",
        "Section": "graphics",
        "Priority": "optional",
        "Description": DESCRIPTION.format(torch=torch),
    }
    (control / "control").write_text("".join(f"{key}: {value}\n" for key, value in fields.items()),
                                     encoding="utf-8")
    sums = [f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(root)}"
            for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink()
            and control not in path.parents]
    (control / "md5sums").write_text("\n".join(sums) + "\n", encoding="utf-8")
    for path in root.rglob("*"):  # dpkg keeps the modes it finds: make them what an installed app should have
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    deb = dist / f"nodegraph_{version}+{variant}_{fields['Architecture']}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", *DEB_COMPRESSION, "--build", str(root), str(deb)], check=True)
    return deb


def build_tarball(bundle: Path, version: str, variant: str, machine: str, work: Path, dist: Path) -> Path:
    """nodegraph-<version>-linux-<machine>-<variant>.tar.gz: unpack anywhere, run ./nodegraph."""
    name = f"nodegraph-{version}-linux-{machine}-{variant}"
    folder = work / "tar" / name
    shutil.rmtree(folder.parent, ignore_errors=True)
    shutil.copytree(bundle, folder, symlinks=True, copy_function=os.link)  # hard links: nothing is changed here
    shutil.copy(LINUX / "README-portable.txt", folder / "README.txt")
    archive = dist / f"{name}.tar.gz"
    compressor = "pigz -6" if shutil.which("pigz") else "gzip -6"
    subprocess.run(["tar", "--owner=0", "--group=0", "--numeric-owner", "-I", compressor, "-cf", str(archive),
                    "-C", str(folder.parent), name], check=True)
    return archive


def build_appimage(bundle: Path, version: str, variant: str, machine: str, icons: Path, work: Path,
                   dist: Path) -> Path | None:
    """nodegraph-<version>-<variant>-<machine>.AppImage, when appimagetool is installed (it is not in Debian's or
    PyPI's registries; the GitHub workflow fetches it)."""
    tool = shutil.which("appimagetool")
    if tool is None:
        log("appimagetool is not installed: no AppImage (see packaging/README.md)")
        return None
    appdir = work / "AppDir"
    shutil.rmtree(appdir, ignore_errors=True)
    shutil.copytree(bundle, appdir, symlinks=True)
    apprun = appdir / "AppRun"
    apprun.write_text('#!/bin/sh\nexec "$(dirname "$(readlink -f "$0")")/nodegraph" "$@"\n', encoding="utf-8")
    apprun.chmod(0o755)
    shutil.copy(LINUX / "nodegraph.desktop", appdir / "nodegraph.desktop")
    shutil.copy(icons / "nodegraph-256.png", appdir / "nodegraph.png")
    (appdir / ".DirIcon").symlink_to("nodegraph.png")
    image = dist / f"nodegraph-{version}-{variant}-{machine}.AppImage"
    subprocess.run([tool, str(appdir), str(image)], check=True, env={**os.environ, "ARCH": machine})
    return image


def build_linux_packages(bundle: Path, version: str, variant: str, machine: str, formats: set[str], dist: Path,
                         work: Path) -> list[Path]:
    """Make the asked artifacts (of "deb", "tar", "appimage") in `dist`; returns them."""
    unknown = formats - {"deb", "tar", "appimage"}
    if unknown:
        raise SystemExit(f"build: unknown format(s) {', '.join(sorted(unknown))}: use deb, tar, appimage")
    dist.mkdir(parents=True, exist_ok=True)
    icons = work / "stage"
    torch = json.loads((bundle / "_internal" / "nodegraph" / "build.json").read_text(encoding="utf-8"))["torch"]
    artifacts = []
    if "deb" in formats:
        artifacts.append(build_deb(bundle, version, variant, machine, torch, icons, work, dist))
    if "tar" in formats:
        artifacts.append(build_tarball(bundle, version, variant, machine, work, dist))
    if "appimage" in formats:
        image = build_appimage(bundle, version, variant, machine, icons, work, dist)
        if image is not None:
            artifacts.append(image)
    return artifacts
