"""What the server benchmarks share: a free port, waiting for a server to answer, and the CPU
time a process has used (from /proc, so it is the server's own, not the load generator's)."""
import os
import socket
import subprocess
import time

_TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15, probe=None):
    """Return once 127.0.0.1:``port`` accepts a connection (and ``probe(sock)`` is true, when
    given); raise RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if probe is None or probe(s):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server on port %d did not come up" % port)


def process_times(pid):
    """(parent pid, user + system CPU seconds) of ``pid``; raises OSError if it is gone."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_seconds(pid):
    """User + system CPU seconds used so far by process ``pid`` (0.0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        return process_times(pid)[1]
    except OSError:
        return 0.0


def stop_process(proc, grace=10):
    """Terminate ``proc`` (SIGTERM), kill it if it is still there after ``grace`` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
