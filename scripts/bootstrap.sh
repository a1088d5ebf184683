#!/usr/bin/env bash
# Makes .venv with chainwarden and its test tools, and installs the Debian packages the
# suite drives for real (openssl s_server, promtool/prometheus, a JDK). Idempotent; quiet unless
# something fails.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# javac (and java) for the JVM oracle of tests/test_oracles.py.
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
if [ "${CHAINWARDEN_SKIP_PROMETHEUS:-0}" != 1 ]; then
    command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "bootstrap: installing Debian packages: ${need_apt[*]}" >&2
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${need_apt[@]}" >/dev/null
    # The Debian package enables and starts a system prometheus; the suite runs its own.
    if [[ " ${need_apt[*]} " == *" prometheus "* ]]; then
        $sudo systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv and installing chainwarden with its test tools" >&2
    python3 -m venv .venv
fi
stamp=.venv/.chainwarden-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log=$(mktemp)
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    touch "$stamp"
fi
