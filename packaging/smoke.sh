#!/usr/bin/env bash
# Smoke test of the Linux artifacts packaging/build.sh left in dist/: every one is used the way a user would, with
# the repository and any virtual environment out of reach (env -i, run from an empty folder):
#   the portable .tar.gz: unpacked, `nodegraph --version`, `nodegraph demo` writes a PNG with its workflow, the
#     desktop app shows its window (offscreen, and under Xvfb when installed) and exits cleanly on a close request;
#   the .deb: installed with dpkg (its Depends first, with apt), the same checks through /usr/bin/nodegraph, every
#     bundled library resolves, the menu entry, icon and workflow file type are registered; then `dpkg -r`, and no
#     file of ours may remain anywhere.
# Needs root (or sudo) for the .deb; installs xvfb and xdotool for the real-window check when apt can.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "smoke: needs root or sudo to install the .deb" >&2; exit 1; }
    sudo="sudo"
fi
deb=$(ls -t dist/nodegraph_*.deb 2>/dev/null | head -n 1)
tarball=$(ls -t dist/nodegraph-*-linux-*.tar.gz 2>/dev/null | head -n 1)
[ -n "$deb" ] && [ -n "$tarball" ] || { echo "smoke: no .deb or .tar.gz in dist/: run packaging/build.sh" >&2; exit 1; }
deb=$repo/$deb
tarball=$repo/$tarball
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' nodegraph/__init__.py)

work=$(mktemp -d /tmp/nodegraph-smoke.XXXXXX)
display_pid=""
cleanup() {
    [ -n "$display_pid" ] && kill "$display_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
failures=0
step() { printf '\n== %s\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() { printf '   FAILED: %s\n' "$*"; failures=$((failures + 1)); }

apt_install() {
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if ! command -v Xvfb >/dev/null || ! command -v xdotool >/dev/null; then
    { $sudo apt-get update -qq && apt_install xvfb xdotool; } || echo "smoke: no Xvfb/xdotool: real-window check skipped"
fi
if command -v Xvfb >/dev/null && command -v xdotool >/dev/null; then
    Xvfb :97 -screen 0 1600x1000x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
    display_pid=$!
    sleep 1
fi

# Run the app as a user would: nothing from this shell's environment, a home of its own, an empty working folder.
app() {  # app HOME_DIR COMMAND ARGS...
    local home=$1
    shift
    mkdir -p "$home" "$work/cwd"
    (cd "$work/cwd" && env -i HOME="$home" NODEGRAPH_HOME="$home/nodegraph" PATH=/usr/bin:/bin "$@")
}

# With SMOKE_SCREENSHOTS=DIR, a picture of the X screen for people to look at (Pillow's ImageGrab, from any
# python3 that has it: a tool of the test, not part of the app under test).
screenshot() {  # screenshot DISPLAY LABEL
    [ -n "${SMOKE_SCREENSHOTS:-}" ] || return 0
    mkdir -p "$SMOKE_SCREENSHOTS"
    sleep 2  # let the first frame settle
    "${SMOKE_PYTHON:-python3}" -c "import sys; from PIL import ImageGrab; ImageGrab.grab(xdisplay=sys.argv[1]).save(sys.argv[2])" \
        "$1" "$SMOKE_SCREENSHOTS/$2.png" && ok "screenshot: $SMOKE_SCREENSHOTS/$2.png" || echo "   (no screenshot: ${SMOKE_PYTHON:-python3} has no Pillow)"
}

# Start the desktop app, wait for its first paint, ask it to close, and check it ended cleanly.
check_window() {  # check_window LABEL HOME COMMAND [DISPLAY]
    local label=$1 home=$2 command=$3 display=${4:-}
    local log=$work/gui-$label.log platform=(QT_QPA_PLATFORM=offscreen)
    [ -n "$display" ] && platform=(DISPLAY="$display")
    mkdir -p "$home" "$work/cwd"
    : >"$log"
    (cd "$work/cwd" && exec env -i HOME="$home" NODEGRAPH_HOME="$home/nodegraph" PATH=/usr/bin:/bin \
        NODEGRAPH_REPORT_FIRST_PAINT=1 "${platform[@]}" "$command") >"$log" 2>&1 &
    local pid=$! waited=0
    while ! grep -q "first paint at" "$log" && kill -0 "$pid" 2>/dev/null && [ $waited -lt 240 ]; do
        sleep 0.5
        waited=$((waited + 1))
    done
    if ! grep -q "first paint at" "$log"; then
        fail "$label: the window never painted"; tail -n 20 "$log"; kill -9 "$pid" 2>/dev/null || true; return
    fi
    if [ -n "$display" ]; then
        local window
        window=$(DISPLAY=$display xdotool search --sync --onlyvisible --name "^nodegraph" | head -n 1)
        if [ -z "$window" ]; then
            fail "$label: no visible nodegraph window on $display"
        else
            ok "$label: window \"$(DISPLAY=$display xdotool getwindowname "$window")\" is shown"
            screenshot "$display" "$label"
            # The user's close request: Ctrl+Q (File > Quit), sent to the focused window.
            DISPLAY=$display xdotool windowfocus --sync "$window" key --clearmodifiers ctrl+q || true
        fi
    else
        ok "$label: the window painted"
        kill -TERM "$pid"  # a session logout's close request
    fi
    local rc=0
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
        fail "$label: still running 60 s after the close request"; kill -9 "$pid"; return
    fi
    wait "$pid" || rc=$?
    if [ $rc -ne 0 ]; then fail "$label: exit status $rc"; tail -n 20 "$log"; return; fi
    if ls "$home/nodegraph/recovery/"*.lock >/dev/null 2>&1; then
        fail "$label: the session did not end cleanly (its recovery marker is left)"
    else
        ok "$label: closed cleanly (exit 0, no recovery marker left)"
    fi
}

# --version, the demo, and the window, through one way of starting the app.
exercise() {  # exercise LABEL COMMAND
    local label=$1 command=$2 home=$work/home-$1
    step "$label: nodegraph --version"
    local shown
    shown=$(app "$home" "$command" --version 2>&1) || true
    if [[ $shown == "nodegraph $version ("*installer* ]]; then ok "$shown"; else fail "--version said: $shown"; fi

    step "$label: nodegraph demo"
    local began=$SECONDS out
    out=$(app "$home" "$command" demo --quiet 2>&1) || { fail "demo failed:"; echo "$out" | tail -n 20; }
    local png
    png=$(echo "$out" | sed -n 's/^save: //p' | tail -n 1)
    if [ -n "$png" ] && [ -f "$png" ] && [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
        && grep -aq "nodegraph-workflow" "$png"; then
        ok "demo wrote $png ($(stat -c %s "$png") bytes, workflow inside) in $((SECONDS - began)) s"
    else
        fail "demo wrote no PNG with its workflow:"; echo "$out" | tail -n 10
    fi

    if [ "$label" = portable ]; then  # the samplers that need torchsde and scipy, which load lazily
        step "$label: nodegraph demo with DPM++ SDE and the beta schedule"
        out=$(app "$home" "$command" demo --quiet --set sample.sampler_name=dpmpp_sde --set sample.scheduler=beta \
            --set sample.steps=4 2>&1) && ok "$(echo "$out" | tail -n 1)" || { fail "demo failed:"; echo "$out" | tail -n 20; }
    fi

    step "$label: the desktop app, offscreen"
    check_window "$label-offscreen" "$home" "$command"
    if [ -n "$display_pid" ]; then
        step "$label: the desktop app in a real X window (Xvfb)"
        check_window "$label-xvfb" "$home" "$command" :97
    fi
}

# ---- the portable .tar.gz ---------------------------------------------------------------------------------------
step "unpack $(basename "$tarball")"
mkdir -p "$work/portable"
tar -xzf "$tarball" -C "$work/portable"
portable=$(ls -d "$work"/portable/nodegraph-*/)
ok "unpacked to $portable"
exercise portable "${portable}nodegraph"

# ---- the .deb ---------------------------------------------------------------------------------------------------
step "install $(basename "$deb")"
if dpkg-query -W nodegraph >/dev/null 2>&1; then $sudo dpkg -P nodegraph >/dev/null; fi
# Dependencies first (they are not ours), so the snapshot below sees only what the .deb itself adds.
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get satisfy -y -qq --no-install-recommends \
    "$(dpkg-deb -f "$deb" Depends), $(dpkg-deb -f "$deb" Recommends)" >/dev/null
snapshot() {
    $sudo find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp -o -path /run -o -path /var/tmp \
        -o -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/cache -o -path /var/log -o -path "$repo" \
        -o -path /root/.cache \) -prune -o -print 2>/dev/null | sort
}
snapshot >"$work/before.txt"
$sudo dpkg -i "$deb" >/dev/null
ok "installed $(dpkg-query -W -f='${Package} ${Version}' nodegraph)"
[ -L /usr/bin/nodegraph ] && [ -x /opt/nodegraph/nodegraph ] && ok "/usr/bin/nodegraph -> $(readlink /usr/bin/nodegraph)" \
    || fail "no nodegraph command on PATH"

step "deb: every bundled library resolves on this system"
unresolved=$(find /opt/nodegraph -type f -name '*.so*' -print0 \
    | LD_LIBRARY_PATH=/opt/nodegraph/_internal xargs -0 -n 50 ldd 2>/dev/null | grep "not found" | sort -u || true)
if [ -z "$unresolved" ]; then ok "no library is missing"; else fail "missing libraries:"; echo "$unresolved"; fi

step "deb: menu entry, icon, workflow file type"
if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate /usr/share/applications/nodegraph.desktop && ok "desktop entry is valid" \
        || fail "desktop entry does not validate"
fi
[ -f /usr/share/icons/hicolor/scalable/apps/nodegraph.svg ] && [ -f /usr/share/icons/hicolor/256x256/apps/nodegraph.png ] \
    && ok "icon installed in the hicolor theme" || fail "icon missing"
cp "$repo/resources/workflows/txt2img.json" "$work/workflow.json"
echo '{"not": "a nodegraph workflow"}' >"$work/other.json"
if command -v gio >/dev/null; then
    kind=$(gio info -a standard::content-type "$work/workflow.json" | sed -n 's/.*content-type: //p')
    other=$(gio info -a standard::content-type "$work/other.json" | sed -n 's/.*content-type: //p')
    [ "$kind" = application/x-nodegraph-workflow ] && [ "$other" = application/json ] \
        && ok "a saved workflow is $kind; other JSON stays $other" || fail "file types: workflow $kind, other $other"
    handlers=$(gio mime application/x-nodegraph-workflow 2>&1 || true)
    grep -q nodegraph.desktop <<<"$handlers" && ok "nodegraph is offered to open workflows" \
        || fail "nodegraph is not registered for workflows: $handlers"
    json_default=$(gio mime application/json 2>&1 | sed -n 's/^Default application for .*: //p')
    [ "$json_default" != nodegraph.desktop ] && ok "JSON files keep their default application (${json_default:-none})" \
        || fail "nodegraph took over JSON files"
fi

exercise deb /usr/bin/nodegraph

step "uninstall: dpkg -r nodegraph"
$sudo dpkg -r nodegraph >/dev/null
snapshot >"$work/after.txt"
# Cache files the desktop's triggers rewrite are theirs, not ours.
left=$(comm -13 "$work/before.txt" "$work/after.txt" \
    | grep -vE '^/usr/share/(mime/[^/]+|applications/mimeinfo\.cache|icons/hicolor/icon-theme\.cache)$' || true)
gone=$(comm -23 "$work/before.txt" "$work/after.txt" || true)
if [ -z "$left" ] && [ ! -e /opt/nodegraph ] && [ ! -e /usr/bin/nodegraph ]; then
    ok "no file of ours is left"
else
    fail "left behind:"; echo "$left" | head -n 20
fi
[ -z "$gone" ] || { fail "removing nodegraph deleted files it did not install:"; echo "$gone" | head -n 20; }
if command -v gio >/dev/null; then
    kind=$(gio info -a standard::content-type "$work/workflow.json" | sed -n 's/.*content-type: //p')
    [ "$kind" = application/json ] && ok "the workflow file type is gone (workflows read as $kind again)" \
        || fail "after removal a workflow still reads as $kind"
fi

echo
if [ $failures -ne 0 ]; then
    echo "smoke: $failures check(s) FAILED"
    exit 1
fi
echo "smoke: all checks passed ($(basename "$deb"), $(basename "$tarball"))"
