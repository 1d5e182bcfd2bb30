#!/usr/bin/env bash
# Installs what the benchmarks in bench/ need beyond the test extra: the peers (greenlet, gevent,
# eventlet, uvloop, uvicorn, granian) into the current Python environment, and wrk + nginx (the WSGI load
# generator and its ceiling) from Debian's packages.  The benchmarks are not part of CI: they
# measure speed, and CI machines are shared.
#   usage: bash bench/setup.sh [python]      (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
"$PY" -m pip install -q -e '.[bench]' uvloop
need_apt=0
command -v wrk >/dev/null || need_apt=1
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt=1
if [ "$need_apt" = 1 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light
    else
        echo "install wrk and nginx (e.g. apt-get install wrk nginx-light) to run bench/wsgi.py" >&2
    fi
fi
command -v gcc >/dev/null || echo "bench/echo.py builds bench/echo_client.c with gcc: install it" >&2
echo "bench environment ready for $("$PY" -V)"
