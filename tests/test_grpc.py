"""grpcio from green threads after ``loop.grpc.init()``: concurrent calls, a hub that keeps running.

The grpc server is a real one (``tests/apps/grpc_echo.py``, no generated code).  The client code
runs in a patched child process: N green threads each make a call that waits D seconds on the
server; together they must finish in about D (far below N x D; serial calls would take N x D),
every answer must be right, and a green thread ticking every 10 ms must keep ticking meanwhile
(grpc's C core waits in C: without ``init()`` each call blocks the whole hub).  Every scenario
runs on both hub backends.  Skips when grpcio is not installed.
"""
import os
import subprocess
import sys
import textwrap

import pytest

grpc = pytest.importorskip("grpc")

pytestmark = pytest.mark.timeout(180)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
APPS = os.path.join(HERE, "apps")
N = 50
D = 0.5
#: Wide margin: serial calls take N * D = 25 s; concurrent ones about D.
LIMIT = 5 * D
#: The longest the 10 ms ticker may stall (load allowance); a call blocking the hub stalls it
#: for D or more.
MAX_TICK_GAP = 0.4


def child_env(backend):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, APPS, env.get("PYTHONPATH", "")])
    env.pop("LOOP_BACKEND", None)
    if backend != "uvloop":
        env["LOOP_BACKEND"] = backend
    return env


@pytest.fixture(params=["uvloop", "asyncio"])
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def echo_server():
    """An unpatched grpc server in a child process (real threads); yields its port."""
    proc = subprocess.Popen([sys.executable, os.path.join(APPS, "grpc_echo.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=child_env("uvloop"))
    try:
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            proc.kill()
            pytest.fail("grpc echo server did not start: %r" % (line,))
        yield int(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


PRELUDE = """
import sys, time, threading
from loop import monkey
monkey.patch_all()
import loop, loop.grpc
loop.grpc.init()
import grpc
import grpc_echo

N, D, LIMIT, MAX_TICK_GAP = %(N)d, %(D)r, %(LIMIT)r, %(MAX_TICK_GAP)r
ticks = []
def ticker():
    while True:
        ticks.append(time.monotonic())
        loop.sleep(0.01)

def concurrently(call):
    '''Run call(i) for i < N in N green threads ("threads" to the code); return the results,
    the elapsed time and the ticker's longest stall meanwhile.'''
    results = {}
    def run(i):
        results[i] = call(i)
    del ticks[:]
    tick = loop.spawn(ticker)
    loop.sleep(0.05)
    start = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    tick.kill()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    stall = max(gaps)
    print("%%s: %%d calls in %%.2f s, longest hub stall %%.3f s" %% (
        call.__name__, N, elapsed, stall))
    assert elapsed < LIMIT, (elapsed, "serial would be", N * D)
    assert stall < MAX_TICK_GAP, stall
    assert len(ticks) > elapsed / 0.01 / 4, (len(ticks), elapsed)
    return results
""" % {"N": N, "D": D, "LIMIT": LIMIT, "MAX_TICK_GAP": MAX_TICK_GAP}


def run_client(code, backend, timeout=120):
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout,
                          env=child_env(backend))
    assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    return proc.stdout


def test_concurrent_unary_calls(echo_server, backend):
    out = run_client("""
        channel = grpc.insecure_channel("127.0.0.1:%d")
        unary = grpc_echo.methods(channel)[0]
        assert unary(b"0:warm-up", timeout=10) == b"echo:warm-up"
        def unary_call(i):
            return unary(b"%%r:%%d" %% (D, i), timeout=30)
        results = concurrently(unary_call)
        assert results == {i: b"echo:%%d" %% i for i in range(N)}, results
        # with_call and future() wait the same way
        response, call = unary.with_call(b"0:x", timeout=10)
        assert response == b"echo:x" and call.code() == grpc.StatusCode.OK
        assert unary.future(b"0:y", timeout=10).result() == b"echo:y"
        channel.close()
    """ % echo_server, backend)
    assert "unary_call: %d calls" % N in out


def test_concurrent_streaming_calls(echo_server, backend):
    run_client("""
        channel = grpc.insecure_channel("127.0.0.1:%d")
        unary, stream, collect, chat = grpc_echo.methods(channel)
        def server_streaming(i):
            # 3 messages D/3 apart
            return [int(m) for m in stream(b"%%r:3" %% (D / 3), timeout=30)]
        assert concurrently(server_streaming) == {i: [0, 1, 2] for i in range(N)}

        def client_streaming(i):
            def requests():
                for k in range(3):
                    time.sleep(D / 3)
                    yield b"%%d" %% (i + k)
            return collect(requests(), timeout=30)
        assert concurrently(client_streaming) == {i: b"%%d" %% (3 * i + 3) for i in range(N)}

        def bidirectional(i):
            requests = iter([b"%%r:%%d-a" %% (D / 2, i), b"%%r:%%d-b" %% (D / 2, i)])
            return list(chat(requests, timeout=30))
        assert concurrently(bidirectional) == {
            i: [b"re:%%d-a" %% i, b"re:%%d-b" %% i] for i in range(N)}
        channel.close()
    """ % echo_server, backend)


def test_deadlines_expire_concurrently(echo_server, backend):
    run_client("""
        channel = grpc.insecure_channel("127.0.0.1:%d")
        unary, stream, collect, chat = grpc_echo.methods(channel)
        def deadline_bound(i):
            try:
                if i %% 2:
                    unary(b"5:late", timeout=D)
                else:
                    list(stream(b"5:2", timeout=D))
            except grpc.RpcError as exc:
                return exc.code()
            return "no deadline error"
        results = concurrently(deadline_bound)
        assert set(results.values()) == {grpc.StatusCode.DEADLINE_EXCEEDED}, results
        channel.close()
    """ % echo_server, backend)


def test_green_server_serves_concurrently(backend):
    # Server and clients in one patched process: the server's handlers run in green threads
    # (the patched ThreadPoolExecutor) and sleep cooperatively.
    run_client("""
        server, port = grpc_echo.make_server(max_workers=N + 10)
        server.start()
        channel = grpc.insecure_channel("127.0.0.1:%d" % port)
        unary, stream, collect, chat = grpc_echo.methods(channel)
        assert unary(b"0:warm-up", timeout=10) == b"echo:warm-up"
        def in_process(i):
            if i % 2:
                return unary(b"%r:%d" % (D, i), timeout=30)
            return list(stream(b"%r:2" % (D / 2), timeout=30))
        results = concurrently(in_process)
        assert results == {i: (b"echo:%d" % i if i % 2 else [b"0", b"1"]) for i in range(N)}
        channel.close()
        server.stop(None)
    """, backend)


def test_call_credentials_plugin_and_interrupted_calls(backend):
    # A metadata plugin is called by grpc from its own threads; after init() grpc hands the call
    # to a green thread instead.  A green thread interrupted while it waits (loop.Timeout) leaves
    # the channel usable.
    run_client("""
        from concurrent import futures
        local = grpc.LocalConnectionType.LOCAL_TCP
        server = grpc.server(futures.ThreadPoolExecutor(N + 10), handlers=[grpc_echo.handler()])
        port = server.add_secure_port("127.0.0.1:0", grpc.local_server_credentials(local))
        server.start()
        plugin_hubs = []
        class Token(grpc.AuthMetadataPlugin):
            def __call__(self, context, callback):
                plugin_hubs.append(loop.get_hub().fiber is not loop.getcurrent())
                callback((("x-token", "secret"),), None)
        credentials = grpc.composite_channel_credentials(
            grpc.local_channel_credentials(local), grpc.metadata_call_credentials(Token()))
        channel = grpc.secure_channel("127.0.0.1:%d" % port, credentials)
        unary = grpc_echo.methods(channel)[0]
        def with_token(i):
            return unary(b"%r:%d" % (D, i), timeout=30)
        assert concurrently(with_token) == {i: b"echo:%d" % i for i in range(N)}
        assert len(plugin_hubs) >= N and all(plugin_hubs), plugin_hubs

        interrupted = 0
        for i in range(5):
            try:
                with loop.Timeout(0.1):
                    unary(b"%r:late" % D, timeout=30)
            except loop.Timeout:
                interrupted += 1
        assert interrupted == 5
        assert unary(b"0:after", timeout=10) == b"echo:after"
        channel.close()
        server.stop(None)
    """, backend)


def test_init_requires_patched_threading_and_checks_its_argument():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import loop.grpc
        try:
            loop.grpc.init()
        except RuntimeError as exc:
            assert "patch_all" in str(exc), exc
        else:
            raise AssertionError("init() without patching succeeded")
        assert not loop.grpc.is_initialized()
        from loop import monkey
        monkey.patch_all()
        for bad in (0, -1, 1.5, "8", True):
            try:
                loop.grpc.init(max_threads=bad)
            except ValueError:
                pass
            else:
                raise AssertionError("max_threads=%r accepted" % (bad,))
        import sys
        before = {name: sys.modules.get(name) for name in ("gevent", "gevent.hub", "gevent.pool")}
        loop.grpc.init()
        loop.grpc.init()  # a second call is a no-op
        assert loop.grpc.is_initialized()
        after = {name: sys.modules.get(name) for name in before}
        assert after == before, (before, after)  # the lent modules are gone again
        from grpc._cython import cygrpc
        from loop.threadpool import ThreadPool
        assert isinstance(cygrpc.g_gevent_threadpool, ThreadPool)
        print("ok")
    """)], capture_output=True, text=True, timeout=60, env=child_env("uvloop"))
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_grpc_pool_works_in_a_forked_child():
    # The pool grpc waits on is loop's; a forked child has none of its threads.
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import os
        from loop import monkey
        monkey.patch_all()
        import loop, loop.grpc
        loop.grpc.init()
        from grpc._cython import cygrpc
        pool = cygrpc.g_gevent_threadpool
        assert pool.apply(os.getpid) == os.getpid()   # leaves an idle thread in the parent
        pid = os.fork()
        if pid == 0:
            try:
                with loop.Timeout(10):
                    assert pool.apply(os.getpid) == os.getpid()
            except BaseException as exc:
                print("child:", repr(exc), flush=True)
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
        print("ok")
    """)], capture_output=True, text=True, timeout=60, env=child_env("uvloop"))
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_init_refuses_when_grpc_already_runs_on_gevent():
    pytest.importorskip("gevent")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        from grpc._cython import cygrpc
        import grpc.experimental.gevent
        grpc.experimental.gevent.init_gevent()
        from loop import monkey
        monkey.patch_all()
        import loop.grpc
        try:
            loop.grpc.init()
        except RuntimeError as exc:
            assert "already" in str(exc), exc
        else:
            raise AssertionError("init() over gevent's succeeded")
        assert not loop.grpc.is_initialized()
        print("ok")
    """)], capture_output=True, text=True, timeout=60, env=child_env("uvloop"))
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
