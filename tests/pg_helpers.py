"""A throw-away PostgreSQL server on 127.0.0.1 for the tests that talk to a real database.

Skips (never fails) when the server binaries or, as root, the ``postgres`` account are missing:
initdb refuses to run as root, so the server then runs as that account."""
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile

import pytest


def _binary(name):
    found = shutil.which(name)
    if found:
        return found
    for version in ("17", "16", "15", "14", "13"):
        candidate = "/usr/lib/postgresql/%s/bin/%s" % (version, name)
        if os.path.exists(candidate):
            return candidate
    return None


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_server(max_connections=100):
    """Start a server with trust authentication; yield its port; stop and remove it."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries are not installed (Debian package postgresql)")
    prefix = []
    if os.geteuid() == 0:
        import pwd
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user for initdb")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser")
        prefix = [runuser, "-u", "postgres", "--"]
    base = tempfile.mkdtemp(prefix="loop-pg-")
    os.chmod(base, 0o777)
    datadir = os.path.join(base, "data")
    port = _free_port()
    try:
        subprocess.run(prefix + [initdb, "-D", datadir, "-U", "postgres", "--auth=trust",
                                 "-E", "UTF8"], check=True, capture_output=True, timeout=120)
        subprocess.run(prefix + [pg_ctl, "-D", datadir, "-l", os.path.join(base, "log"), "-w",
                                 "-o", "-p %d -k %s -c listen_addresses=127.0.0.1 "
                                 "-c max_connections=%d" % (port, base, max_connections),
                                 "start"], check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip("could not start PostgreSQL: %s" % (getattr(exc, "stderr", b"") or exc,))
    try:
        yield port
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", datadir, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
