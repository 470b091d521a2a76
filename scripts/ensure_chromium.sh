#!/usr/bin/env bash
# Print the path of a headless-capable Chromium, installing Debian's `chromium` when missing.
#
# Exit 0 with the browser's path on stdout; exit 3 with one line saying why it cannot be
# installed. apt's output goes to a log file under ${TMPDIR:-/tmp}.
set -euo pipefail

find_browser() {
    local name
    for name in chromium chromium-browser; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

if find_browser; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is not on PATH and apt-get is missing: install chromium by hand"
    exit 3
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    as_root=(sudo -n)
else
    echo "chromium is not on PATH and installing it needs root (no passwordless sudo):" \
        "run 'apt-get install chromium' as root"
    exit 3
fi

log="${TMPDIR:-/tmp}/ensure_chromium.$$.log"
install_chromium() {
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends chromium >>"$log" 2>&1
}

if ! install_chromium; then
    # Usually the package lists are absent (a slim image): fetch them once and retry.
    if ! { "${as_root[@]}" apt-get update -q >>"$log" 2>&1 && install_chromium; }; then
        echo "apt-get could not install chromium (see $log)"
        exit 3
    fi
fi

if ! find_browser; then
    echo "chromium was installed but is not on PATH (see $log)"
    exit 3
fi
