#!/usr/bin/env bash
# Build nodegraph's installers into dist/ (Linux: .deb, .tar.gz, AppImage where appimagetool exists, SHA256SUMS).
#   packaging/build.sh [--torch cpu|cu126|cu128|...] [--formats deb,tar,appimage] [--reuse-venv]
# The work happens in packaging/build.py; this wrapper finds Python and, on Debian/Ubuntu, installs the system
# packages the build needs (the libraries Qt loads must be present so the bundle and its Depends are complete).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
    echo "build.sh: python3 (3.10 or newer, with venv) is needed" >&2
    exit 1
fi

if [ "$(uname -s)" = Linux ] && command -v dpkg-query >/dev/null; then
    # binutils: PyInstaller's and our library checks; pigz: a faster .tar.gz; the rest: libraries Qt's xcb and
    # Wayland plugins load.
    needed=(binutils pigz libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0
            libxcb-xkb1 libxkbcommon-x11-0 libwayland-cursor0 libwayland-egl1 libegl1 libgl1 libfontconfig1
            libdbus-1-3)
    missing=()
    for package in "${needed[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "[build] installing build prerequisites: ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
fi

exec "$python" packaging/build.py "$@"
