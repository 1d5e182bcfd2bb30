"""loop.monkey: every test patches a *child* Python process, never the pytest process."""
import ast
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytestmark = pytest.mark.timeout(90)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, *args, patch_via_main=False, timeout=60, expect_rc=0):
    code = textwrap.dedent(code)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", "")
    if patch_via_main:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(code)
        command = [sys.executable, "-m", "loop.monkey", f.name, *args]
    else:
        command = [sys.executable, "-c", code, *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == expect_rc, "rc=%s\nstdout:\n%s\nstderr:\n%s" % (
        proc.returncode, proc.stdout, proc.stderr)
    return proc


def test_threads_sleep_executor_queue_signal():
    proc = run_python("""
        import time, threading, queue, signal, os
        from concurrent.futures import ThreadPoolExecutor
        start = time.monotonic()
        done = []
        threads = [threading.Thread(target=lambda i=i: (time.sleep(0.3), done.append(i)))
                   for i in range(50)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert sorted(done) == list(range(50))
        assert time.monotonic() - start < 50 * 0.3 / 5, time.monotonic() - start
        start = time.monotonic()
        with ThreadPoolExecutor(20) as ex:
            assert list(ex.map(lambda x: (time.sleep(0.2), x * 2)[1], range(20))) == \
                [x * 2 for x in range(20)]
        assert time.monotonic() - start < 20 * 0.2 / 4
        q = queue.Queue()
        threading.Thread(target=lambda: (time.sleep(0.05), q.put(5))).start()
        assert q.get(timeout=5) == 5
        sq = queue.SimpleQueue()
        threading.Thread(target=lambda: (time.sleep(0.05), sq.put(6))).start()
        assert sq.get(timeout=5) == 6
        event = threading.Event()
        signal.signal(signal.SIGUSR1, lambda *a: event.set())
        assert signal.getsignal(signal.SIGUSR1).__name__ == "<lambda>"
        threading.Thread(target=lambda: (time.sleep(0.05),
                                         os.kill(os.getpid(), signal.SIGUSR1))).start()
        assert event.wait(5)
        cond = threading.Condition(threading.RLock())
        def notifier():
            time.sleep(0.05)
            with cond:
                cond.notify()
        threading.Thread(target=notifier).start()
        with cond:
            assert cond.wait(5)
        assert threading.current_thread() is threading.main_thread()
        local = threading.local()
        local.x = 1
        seen = []
        t = threading.Thread(target=lambda: seen.append(getattr(local, "x", None)))
        t.start(); t.join()
        assert seen == [None]
        # a non-daemon thread still running at exit is waited for by threading._shutdown
        threading.Thread(target=lambda: (time.sleep(0.2), print("late thread done"))).start()
        print("ok")
    """, patch_via_main=True)
    assert "ok" in proc.stdout and "late thread done" in proc.stdout


def test_imported_before_patch_still_works():
    proc = run_python("""
        import asyncio, concurrent.futures, ssl, threading, socket, time, subprocess
        early_context = ssl.create_default_context()
        import loop.monkey
        loop.monkey.patch_all()
        import loop.ssl
        wrapped = early_context.wrap_socket(socket.socket(), server_hostname="x",
                                            do_handshake_on_connect=False)
        assert isinstance(wrapped, loop.ssl.SSLSocket), type(wrapped)
        wrapped.close()
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(10) as ex:
            futures = [ex.submit(time.sleep, 0.3) for _ in range(10)]
            concurrent.futures.wait(futures)
        assert time.monotonic() - start < 10 * 0.3 / 3
        a, b = socket.socketpair()
        t = threading.Thread(target=lambda: (time.sleep(0.05), b.sendall(b"x")))
        t.start()
        assert a.recv(1) == b"x"
        t.join()
        print("ok")
    """)
    assert "ok" in proc.stdout


def test_originals_and_idempotence():
    proc = run_python("""
        import time, socket, select, selectors, threading, _thread
        real_sleep = time.sleep
        real_socket = socket.socket
        import loop.monkey as monkey
        assert not monkey.is_module_patched("socket")
        monkey.patch_all()
        monkey.patch_all()
        assert monkey.get_original("time", "sleep") is real_sleep
        assert monkey.get_original("socket", "socket") is real_socket
        assert monkey.get_original("socket", ["socket"]) == [real_socket]
        assert monkey.is_module_patched("socket") and monkey.is_object_patched("time", "sleep")
        assert time.sleep is not real_sleep
        assert not hasattr(select, "epoll") and not hasattr(selectors, "EpollSelector")
        assert selectors.DefaultSelector.__module__ == "loop.selectors"
        assert threading.Lock is _thread.allocate_lock
        import loop._core.hub
        hub = loop._core.hub.get_hub()
        time.sleep(0.01)   # the hub runs on the real selector: sleeping works
        print("ok")
    """)
    assert "ok" in proc.stdout


def test_stale_reference_warning():
    proc = run_python("""
        import sys, types, warnings
        mod = types.ModuleType("early_user")
        exec("from time import sleep", mod.__dict__)
        sys.modules["early_user"] = mod
        import loop.monkey
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loop.monkey.patch_all()
        messages = [str(w.message) for w in caught
                    if issubclass(w.category, loop.monkey.MonkeyPatchWarning)]
        assert any("early_user.sleep" in m for m in messages), messages
        print("ok")
    """)
    assert "ok" in proc.stdout


def test_fork_and_waitpid_are_cooperative():
    proc = run_python("""
        import os, time, threading
        ticks = []
        def ticker():
            for _ in range(10):
                ticks.append(1)
                time.sleep(0.02)
        t = threading.Thread(target=ticker)
        t.start()
        pid = os.fork()
        if pid == 0:
            # the child has a working hub
            import socket
            a, b = socket.socketpair()
            threading.Thread(target=lambda: (time.sleep(0.05), b.sendall(b"c"))).start()
            assert a.recv(1) == b"c"
            time.sleep(0.3)
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 7
        assert len(ticks) >= 5, ticks   # the parent's green threads ran meanwhile
        t.join()
        print("ok")
    """, patch_via_main=True)
    assert "ok" in proc.stdout


def test_subprocess_pipes_and_communicate_timeout():
    proc = run_python("""
        import subprocess, time, threading, sys
        start = time.monotonic()
        results = {}
        def run(i):
            results[i] = subprocess.run(["sh", "-c", "sleep 0.3; echo %d" % i],
                                        capture_output=True, text=True).stdout.strip()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(10)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert results == {i: str(i) for i in range(10)}, results
        assert time.monotonic() - start < 10 * 0.3 / 3
        p = subprocess.Popen(["sleep", "5"])
        try:
            p.communicate(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        else:
            raise AssertionError("no timeout")
        p.kill(); p.wait()
        p = subprocess.Popen([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = p.communicate(b"abc" * 100000, timeout=20)
        assert out.strip() == b"ABC" * 100000
        p = subprocess.Popen(["sh", "-c", "echo one; sleep 0.2; echo two"],
                             stdout=subprocess.PIPE, text=True)
        ticks = []
        t = threading.Thread(target=lambda: [ticks.append(time.sleep(0.02)) for _ in range(5)])
        t.start()
        assert p.stdout.readline() == "one\\n"
        assert p.stdout.readline() == "two\\n"
        assert p.wait() == 0
        t.join()
        assert len(ticks) == 5
        p.stdout.close()
        print("ok")
    """)
    assert "ok" in proc.stdout


def test_run_module_with_dash_m(tmp_path):
    (tmp_path / "demo_mod.py").write_text(
        "import sys, socket\nprint('args', sys.argv[1:], socket.socket.__module__)\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "src"), str(tmp_path)])
    proc = subprocess.run([sys.executable, "-m", "loop.monkey", "-m", "demo_mod", "a", "b"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "args ['a', 'b'] loop.socket" in proc.stdout


def test_patched_http_stack_is_concurrent():
    proc = run_python("""
        import threading, time, http.server, urllib.request, socketserver
        class Slow(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(0.3)
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        results = {}
        def fetch(i):
            with urllib.request.urlopen("http://127.0.0.1:%d/%d" % (port, i), timeout=10) as r:
                results[i] = r.read().decode()
        start = time.monotonic()
        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(20)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert results == {i: "/%d" % i for i in range(20)}
        assert time.monotonic() - start < 20 * 0.3 / 4, time.monotonic() - start
        server.shutdown()
        print("ok")
    """, patch_via_main=True)
    assert "ok" in proc.stdout


def test_stdlib_runner_smoke():
    """The CPython-suite runner works end to end on one small module."""
    runner = os.path.join(ROOT, "tests", "stdlib", "run_stdlib.py")
    proc = subprocess.run([sys.executable, runner, "--modules", "test_threading_local",
                           "--timeout", "120"], capture_output=True, text=True, timeout=150,
                          env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_threading_local" in proc.stdout


def test_popen_finalized_at_exit_without_noise():
    # Popen.__del__ takes a (green) lock; at exit it may run after loop.thread's globals are gone.
    proc = run_python("""
        import loop.monkey; loop.monkey.patch_all()
        import signal, socket, subprocess, sys
        import loop
        signal.signal(signal.SIGCHLD, lambda *args: None)
        a, b = socket.socketpair()
        loop.sleep(0.01)
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        loop.sleep(0.3)  # never waited for: finalized during interpreter shutdown
    """)
    assert "Exception ignored" not in proc.stderr, proc.stderr


def test_pipeline_child_reads_a_green_pipe_in_blocking_mode():
    # p1.stdout is handed to p2 as its stdin: the child must not inherit O_NONBLOCK (it would
    # read EAGAIN and give up), while the parent's own reads still only block its green thread.
    proc = run_python("""
        import loop.monkey; loop.monkey.patch_all()
        import os, subprocess, time, loop
        p1 = subprocess.Popen(["sh", "-c", "sleep 0.3; echo piped"], stdout=subprocess.PIPE)
        p2 = subprocess.Popen(["cat"], stdin=p1.stdout, stdout=subprocess.PIPE)
        print("blocking", os.get_blocking(p1.stdout.fileno()))
        ticks = []
        ticker = loop.spawn(lambda: [ticks.append(loop.sleep(0.02)) for _ in range(5)])
        out = p2.stdout.read()
        print(out.decode().strip(), len(ticks) >= 5)
        p1.stdout.close(); p1.wait(); p2.wait()
    """)
    assert proc.stdout.split() == ["blocking", "True", "piped", "True"], proc.stderr


def test_second_patch_all_does_not_warn_about_green_names_bound_after_the_first():
    # A module imported after the patch binds the *green* object; patching again must not call
    # that a stale original.
    proc = run_python("""
        import warnings
        from loop import monkey
        monkey.patch_all()
        from _thread import get_ident  # now the green get_ident, as reprlib would bind it
        from time import sleep
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            monkey.patch_all()
        stale = [str(w.message) for w in caught if issubclass(w.category,
                                                              monkey.MonkeyPatchWarning)]
        assert not stale, stale
        print("ok")
    """)
    assert proc.stdout.strip() == "ok"


# ------------------------------------------------------------------------------------------------
# The green stdlib behind thin public modules: what the patch installs is what they export

PUBLIC_GREEN_MODULES = ("socket", "select", "selectors", "ssl", "os", "signal", "subprocess",
                        "thread", "time", "fileobject")


def test_patch_installs_the_objects_the_public_modules_export():
    proc = run_python("""
        import importlib, sys
        import _thread, os, select, selectors, signal, socket, ssl, subprocess, threading, time
        from loop import monkey
        monkey.patch_all()
        checked = 0
        for stdlib, public_name, green_name, names in [
                (socket, "loop.socket", "loop._green.socket", None),
                (socket, "loop.socket", "loop._green.dns", None),
                (select, "loop.select", "loop._green.select", None),
                (time, "loop.time", "loop._green.time", None),
                (os, "loop.os", "loop._green.os", None),
                (signal, "loop.signal", "loop._green.signal", None),
                (_thread, "loop.thread", "loop._green.thread",
                 ["allocate_lock", "start_new_thread", "get_ident", "LockType", "RLock"]),
                (threading, "loop.thread", "loop._green.thread", None)]:
            public = importlib.import_module(public_name)
            green = importlib.import_module(green_name)
            for name in names or getattr(green, "__implements__", ()):
                installed = getattr(stdlib, name)
                assert installed is getattr(green, name), (stdlib.__name__, name)
                assert installed is getattr(public, name), (public_name, name)
                checked += 1
        # threading's private copies are the green _thread's
        import loop.thread
        assert threading._allocate_lock is loop.thread.allocate_lock
        assert threading.get_ident is loop.thread.get_ident
        # the public modules list the names that were replaced
        import loop.os, loop.select, loop.signal, loop.socket, loop.ssl, loop.time
        assert loop.socket.__implements__ == ["socket", "create_connection", "create_server",
                                              "socketpair", "fromfd"]
        assert loop.socket.__dns__[0] == "getaddrinfo" and "getfqdn" in loop.socket.__dns__
        assert loop.time.__implements__ == ["sleep"]
        assert loop.os.__implements__ == ["waitpid", "wait"]
        assert loop.signal.__implements__ == ["signal", "getsignal"]
        assert "SSLSocket" in loop.ssl.__implements__
        # ...and the rest of the stdlib namespace stays the stdlib's
        assert loop.socket.AF_INET is socket.AF_INET and loop.os.pipe is os.pipe
        assert loop.ssl.CERT_NONE is ssl.CERT_NONE and loop.time.monotonic is time.monotonic
        # objects that are set rather than named in __implements__
        import loop.selectors, loop.subprocess
        assert selectors.DefaultSelector is loop.selectors.GreenSelector
        assert ssl.SSLContext.sslsocket_class is loop.ssl.SSLSocket
        assert ssl.create_connection is loop.socket.create_connection
        assert subprocess.io is loop.subprocess.green_io
        assert subprocess._PopenSelector is loop.selectors.DefaultSelector
        print("checked", checked)
    """)
    assert int(proc.stdout.split()[-1]) >= 20, proc.stdout


def test_public_green_classes_show_their_public_module():
    proc = run_python("""
        import pickle
        import loop.fileobject, loop.selectors, loop.socket, loop.ssl, loop.subprocess
        import loop.thread
        for module, names in [
                (loop.socket, ["socket"]), (loop.selectors, ["GreenSelector"]),
                (loop.ssl, ["SSLSocket", "SSLContext"]), (loop.subprocess, ["GreenPipe"]),
                (loop.thread, ["LockType", "RLock"]),
                (loop.fileobject, ["FileObjectPosix", "FileObjectThread", "FileObjectBlock"])]:
            for name in names:
                cls = getattr(module, name)
                assert cls.__module__ == module.__name__, (cls, cls.__module__)
                # by reference, through the public path
                assert pickle.loads(pickle.dumps(cls)) is cls
        with loop.socket.socket() as sock:
            assert repr(sock).startswith("<loop.socket.socket fd="), repr(sock)
        assert repr(loop.thread.allocate_lock()).startswith(
            "<unlocked loop.thread green _thread.lock object at ")
        print("ok")
    """)
    assert proc.stdout.strip() == "ok"


def test_public_green_modules_define_nothing_of_their_own():
    # Thin mirrors: the code lives in loop/_green/, where monkey takes it from; a function or
    # class written in a public module would be a second copy that the patch does not install.
    for name in PUBLIC_GREEN_MODULES:
        path = os.path.join(ROOT, "src", "loop", name + ".py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        defined = [node.name for node in ast.walk(tree)
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert not defined, "%s defines %s; move it to loop/_green/%s.py" % (path, defined, name)
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert any(module.startswith("loop._green.") for module in imported), path


# ------------------------------------------------------------------------------------------------
# python -m loop.monkey: options and usage errors

def _run_monkey_main(tmp_path, *args):
    script = tmp_path / "show.py"
    script.write_text(textwrap.dedent("""
        import socket, sys, time
        from loop import monkey
        print("socket", monkey.is_module_patched("socket"), "time",
              monkey.is_module_patched("time"), "argv", sys.argv[1:], "name", __name__)
    """))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "loop.monkey", *[
        str(script) if arg == "SCRIPT" else arg for arg in args]],
        capture_output=True, text=True, timeout=60, env=env)


def test_main_runs_a_script_as_main_with_its_arguments(tmp_path):
    proc = _run_monkey_main(tmp_path, "SCRIPT", "x", "--y")
    assert proc.returncode == 0, proc.stderr
    # Patching first thing is what the stale-reference warning recommends: nothing to warn about
    # (patch_all's own imports, such as importlib.metadata for the plugins, included).
    assert proc.stderr == ""
    assert proc.stdout.split() == ["socket", "True", "time", "True", "argv", "['x',", "'--y']",
                                   "name", "__main__"]


def test_main_no_flag_leaves_that_module_alone(tmp_path):
    proc = _run_monkey_main(tmp_path, "--no-socket", "SCRIPT")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:4] == ["socket", "False", "time", "True"]


@pytest.mark.parametrize("args", [[], ["--verbose", "SCRIPT"], ["-m"]])
def test_main_usage_errors_exit_2(tmp_path, args):
    proc = _run_monkey_main(tmp_path, *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("usage: python -m loop.monkey"), proc.stderr
    assert proc.stdout == ""


def test_main_help(tmp_path):
    proc = _run_monkey_main(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m loop.monkey")


def test_public_modules_mirror_the_unpatched_stdlib_even_when_imported_after_the_patch():
    # They copy the stdlib module's namespace when imported; the patch must not leak into that
    # copy (an aggressive patch removes select.epoll, but loop.select still has it, as
    # gevent.select does).
    proc = run_python("""
        import select, selectors, ssl
        from loop import monkey
        monkey.patch_all()
        assert not hasattr(select, "epoll")
        import loop.select, loop.selectors, loop.ssl
        assert loop.select.epoll is monkey.get_original("select", "epoll")
        assert loop.selectors.EpollSelector is monkey.get_original("selectors", "EpollSelector")
        assert loop.selectors.SelectSelector is monkey.get_original("selectors", "SelectSelector")
        assert loop.ssl.create_connection is monkey.get_original("ssl", "create_connection")
        print("ok")
    """)
    assert proc.stdout.strip() == "ok"
