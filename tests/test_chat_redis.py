"""Two chat server processes sharing rooms through a real redis-server.

The test starts its own redis-server on a free loopback port in a temporary directory (no
persistence); it skips when ``redis-server`` or the ``redis`` Python package is missing.
"""
import shutil
import subprocess
import tempfile
import time

import pytest

from chat_support import ChatProcess, free_port

pytestmark = pytest.mark.timeout(120)

pytest.importorskip("redis", reason="the redis package is not installed (pip install redis)")
pytest.importorskip("loop.monkey", reason="loop.monkey is not available yet")

REDIS_SERVER = shutil.which("redis-server")


@pytest.fixture
def redis_url():
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (Debian: redis-server)")
    import redis
    workdir = tempfile.mkdtemp(prefix="loop-chat-redis-")
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
         "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    try:
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def test_two_processes_share_a_room(redis_url):
    with ChatProcess("--redis", redis_url) as first, ChatProcess("--redis", redis_url) as second:
        alice = first.client()
        alice.send("/nick alice")
        bob = second.client()
        bob.send("/nick bob")
        bob.expect("is now known as bob")
        # Joins and messages cross processes, in both directions.
        alice.expect("now known as bob")
        alice.send("hello from process one")
        bob.expect("[lobby] <alice> hello from process one")
        bob.send("/me waves from process two")
        alice.expect("[lobby] * bob waves from process two")
        # Presence is shared too.
        bob.send("/who")
        assert bob.expect("in #lobby:") == "*** in #lobby: alice, bob"
        alice.send("/join ops")
        bob.expect("alice left #lobby (joined #ops)")
        carol = second.client()
        carol.send("/nick carol")
        carol.send("/join ops")
        alice.expect("carol joined #ops")
        carol.send("/rooms")
        assert carol.expect("rooms:") == "*** rooms: #lobby (1), #ops (2)"
        carol.send("private to ops")
        alice.expect("[ops] <carol> private to ops")
        # Lines read together are published together (one pipeline), still in order.
        carol.sock.sendall(b"".join(b"batch %d\n" % n for n in range(30)))
        alice.expect("[ops] <carol> batch 29")
        assert [line for line in alice.lines if "> batch " in line] == \
            [f"[ops] <carol> batch {n}" for n in range(30)]
        bob.send("/who")
        bob.expect("in #lobby: bob")
        assert not any("private to ops" in line for line in bob.lines)
        # One process stops; the other goes on and its presence is cleaned up.
        rc, err = first.terminate()
        assert rc == 0, err
        alice.expect("server shutting down")
        carol.send("/who")
        assert carol.expect("in #ops:") == "*** in #ops: carol"
        rc, err = second.terminate()
        assert rc == 0, err
