"""loop.subprocess.Popen: several green threads waiting for one child, and a child waited for
with loop.wait()/iwait() (gevent's Popen is a waitable object: rawlink/unlink)."""
import pickle
import sys

import pytest

import loop
from loop import subprocess

from script_helpers import run_python

pytestmark = pytest.mark.timeout(60)


def exiting(code, after=0.0):
    return subprocess.Popen([sys.executable, "-c",
                             "import sys, time; time.sleep(%r); sys.exit(%d)" % (after, code)])


def test_green_threads_waiting_for_the_same_child_all_get_its_status():
    # Popen.wait() holds a lock around its (green) waitpid: a second waiter must wait for it
    # greenly, not block the OS thread on a real lock that the first waiter holds.  Before,
    # this hung the process, hence the child interpreter.
    result = run_python("""
        import sys, loop
        from loop import subprocess
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
        ticks = []
        ticker = loop.spawn(lambda: [ticks.append(loop.sleep(0.02)) for _ in range(5)])
        waiters = [loop.spawn(child.wait) for _ in range(3)]
        loop.joinall(waiters + [ticker], timeout=10)
        print([w.value for w in waiters], len(ticks))
    """, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[0,", "0,", "0]", "5"]


def test_patched_stdlib_popen_waited_by_several_green_threads_without_patched_threads():
    # patch_all(thread=False) leaves threading's locks real; the stdlib Popen's waitpid lock
    # must still be green, or the second waiter blocks the OS thread (this hung before).
    result = run_python("""
        from loop import monkey
        monkey.patch_all(thread=False)
        import subprocess, sys, loop
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
        waiters = [loop.spawn(child.wait) for _ in range(3)]
        loop.joinall(waiters, timeout=10)
        print([w.value for w in waiters])
        assert monkey.get_original("subprocess", "threading") is __import__("threading")
    """, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 0, 0]"


def test_loop_wait_returns_the_child_once_it_exited():
    child = exiting(11, after=0.2)
    assert loop.wait([child], timeout=10) == [child]
    assert child.returncode == 11 and child.poll() == 11


def test_iwait_yields_children_in_the_order_they_exit():
    slow, fast = exiting(3, after=1.5), exiting(4, after=0.05)
    assert list(loop.iwait([slow, fast], timeout=10)) == [fast, slow]
    assert (slow.returncode, fast.returncode) == (3, 4)


def test_rawlink_callback_gets_the_popen_also_when_it_already_exited():
    child = exiting(5)
    child.wait()
    seen = []
    child.rawlink(seen.append)
    loop.sleep(0.05)
    assert seen == [child]
    with pytest.raises(TypeError):
        child.rawlink(42)


def test_a_wait_that_times_out_leaves_nothing_behind():
    # unlink() of the last link stops watching the child; the conftest's hub check after the
    # test sees no green thread still waiting for it.
    child = exiting(0, after=30)
    try:
        assert loop.wait([child], timeout=0.1) == []
        seen = []
        child.rawlink(seen.append)
        child.unlink(seen.append)
        loop.sleep(0.05)
        assert seen == [] and child.returncode is None
    finally:
        child.kill()
        child.wait()


def test_popen_is_shown_under_loop_subprocess_and_made_by_run():
    assert subprocess.Popen.__module__ == "loop.subprocess"
    assert pickle.loads(pickle.dumps(subprocess.Popen)) is subprocess.Popen
    # run() and friends create the waitable class too
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
    assert subprocess.run.__globals__["Popen"] is subprocess.Popen


def never_exiting(**pipes):
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], **pipes)


@pytest.mark.parametrize("text", [False, True], ids=["bytes", "text"])
def test_leaving_the_with_block_while_another_green_thread_reads_a_pipe(text):
    # The reader holds the pipe's buffer (its lock belongs to this OS thread) while it is
    # parked: closing the buffer from here would be a "reentrant call".  Leaving the block must
    # close the pipes anyway, wake the reader with an error, and reap the child.
    child = never_exiting(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text)
    reader = loop.spawn(child.stdout.read)
    loop.sleep(0.1)
    assert not reader.ready()
    child.kill()
    with child:
        pass
    assert child.stdout.closed and child.stderr.closed
    assert child.returncode is not None
    reader.join(timeout=5)
    assert isinstance(reader.exception, (OSError, ValueError)), reader.exception


def test_closing_stdin_while_another_green_thread_is_blocked_writing_it():
    child = never_exiting(stdin=subprocess.PIPE)
    try:
        writer = loop.spawn(child.stdin.write, b"x" * (4 << 20))   # more than a pipe holds
        loop.sleep(0.1)
        assert not writer.ready()
        child.stdin.close()
        assert child.stdin.closed
        writer.join(timeout=5)
        assert isinstance(writer.exception, (OSError, ValueError)), writer.exception
    finally:
        child.kill()
        child.wait()
