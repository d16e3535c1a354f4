# Shared by .ci/serve, .ci/test and .ci/run: make a fresh Debian/Ubuntu machine able to run notifier.
# Installs only from the registries (Debian packages, PyPI, npm).

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    echo "installing with apt: $*" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_python() {
    if ! command -v python3 >/dev/null || ! python3 -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
        apt_install python3 python3-venv python3-pip
    fi
}

port_open() {
    python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

ensure_rabbitmq() {
    # Only the default local broker is managed here; with AMQP_URL set the broker is someone else's.
    if [ -n "${AMQP_URL:-}" ] || port_open 127.0.0.1 5672; then
        return 0
    fi
    if ! command -v rabbitmq-server >/dev/null && [ ! -x /usr/sbin/rabbitmq-server ]; then
        apt_install rabbitmq-server
    fi
    if ! port_open 127.0.0.1 5672; then
        echo "starting RabbitMQ" >&2
        as_root env PATH="$PATH:/usr/sbin" rabbitmq-server -detached
    fi
    for _ in $(seq 1 120); do
        port_open 127.0.0.1 5672 && return 0
        sleep 1
    done
    echo "RabbitMQ did not come up on 127.0.0.1:5672" >&2
    return 1
}

ensure_venv() {
    # $1: the extras to install, e.g. "embedded,test"; every version is the one constraints.txt pins.
    # .ci/run installs every extra once and sets NOTIFIER_VENV_READY, so that lint and tests can run side by
    # side without two pip installs racing in one venv.
    if [ "${NOTIFIER_VENV_READY:-}" = 1 ]; then
        return
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    # pip stays in the venv for its users; uv installs the project (the same pins, in seconds instead of half a minute).
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$REPO/constraints.txt" --upgrade pip uv
    "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -c "$REPO/constraints.txt" -e "$REPO[$1]"
    (cd "$REPO" && "$VENV/bin/notifier" fetch-assets >/dev/null)
}

ensure_chromium() {
    # Browser tests drive Debian's Chromium through playwright (no browser download).
    if [ ! -x /usr/bin/chromium ]; then
        apt_install chromium chromium-driver
    fi
}
