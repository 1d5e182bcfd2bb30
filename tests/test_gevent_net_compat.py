"""Behaviours that gevent's own socket, select and threading tests check, checked here on
loop's terms (real sockets, real threads)."""
import errno

import pytest

import loop
from loop import select, socket

from script_helpers import run_python

pytestmark = pytest.mark.timeout(60)


def test_select_on_an_object_closed_during_its_wait_raises_ebadf():
    # Another green thread closes a socket a select() waits on: the select ends at once with
    # OSError(EBADF) saying so (as a green socket's own wait does), not with the real select's
    # ValueError about a negative descriptor, which blames an argument that was valid.
    a, b = socket.socketpair()
    try:
        loop.spawn_later(0.05, a.close)
        started = loop.get_hub().loop.time()
        with pytest.raises(OSError) as caught:
            select.select([b, a], [], [], 5)
        assert caught.value.errno == errno.EBADF
        assert "closed by another green thread" in str(caught.value)
        assert loop.get_hub().loop.time() - started < 4
    finally:
        b.close()
    # a ValueError of the real select that is not about a closed object stays what it is
    with pytest.raises(ValueError):
        select.select([-1], [], [], 0.01)


def test_an_unstarted_patched_thread_reports_what_cpython_reports():
    # Before start(), a Thread's repr (3.13: from its _ThreadHandle) must say what the same
    # Python says without loop.
    code = """
        %s
        import threading
        thread = threading.Thread(target=lambda: None, name="probe")
        print(repr(thread), thread.is_alive(), thread.ident)
        thread.start()
        thread.join()
        print(repr(thread).split(",")[1].split()[0], thread.is_alive())
    """
    plain = run_python(code % "pass")
    assert plain.returncode == 0, plain.stderr
    patched = run_python(code % "from loop import monkey; monkey.patch_all()")
    assert patched.returncode == 0, patched.stderr
    assert patched.stdout == plain.stdout
