"""gevent's API details of the module-level functions (iwait as a context manager,
spawn_raw/signal_handler argument checks, killall with raw fibers and a timeout, wrap_errors,
connect_ex on an unresolvable name), as gevent's own tests check them."""
import signal
import socket as stdlib_socket

import pytest

import loop
from loop._core import api as _api
from loop.event import Event


def _link_count(event):
    links = event._links
    return 0 if links is None else len(links) if isinstance(links, list) else 1


def test_iwait_is_a_context_manager_that_unlinks_on_exit():
    events = [Event() for _ in range(3)]
    events[1].set()
    with loop.iwait(events) as it:
        assert next(it) is events[1]
        assert [_link_count(e) for e in events] == [1, 1, 1]
    assert [_link_count(e) for e in events] == [0, 0, 0]
    assert list(it) == []  # closed


def test_iwait_iterates_and_times_out_as_before():
    events = [Event() for _ in range(3)]
    loop.spawn_later(0.01, events[2].set)
    loop.spawn_later(0.02, events[0].set)
    assert list(loop.iwait(events, timeout=1, count=2)) == [events[2], events[0]]
    assert list(loop.iwait([Event()], timeout=0.01)) == []
    assert set(loop.wait(events, timeout=0.01)) == {events[2], events[0]}


def test_spawn_raw_and_signal_handler_refuse_what_is_not_callable():
    with pytest.raises(TypeError):
        loop.spawn_raw(1)
    with pytest.raises(TypeError):
        _api.signal_handler(signal.SIGUSR1, 1)
    handler = _api.signal_handler(signal.SIGUSR1, lambda: None)
    try:
        assert handler.ref is False
    finally:
        handler.cancel()


def test_killall_kills_raw_fibers_and_raises_timeout():
    raw = loop.spawn_raw(loop.sleep, 30)
    green = loop.spawn(loop.sleep, 30)
    loop.sleep(0)
    loop.killall([raw, green])
    assert raw.dead and green.dead

    gave_up = []

    def refuses_to_die():
        while not gave_up:
            try:
                loop.sleep(30)
            except loop.GreenletExit:
                pass

    g = loop.spawn(refuses_to_die)
    loop.sleep(0)
    with pytest.raises(loop.Timeout):
        loop.killall([g], timeout=0.05)
    gave_up.append(True)
    g.kill()
    assert g.dead


def test_wrap_errors_returns_the_exception():
    from loop.util import wrap_errors
    divide = wrap_errors(ZeroDivisionError, lambda a, b: a / b)
    assert divide(4, 2) == 2
    assert isinstance(divide(1, 0), ZeroDivisionError)
    with pytest.raises(TypeError):
        divide(1, None)


def test_connect_ex_raises_for_an_unresolvable_name():
    from loop import socket as gsocket
    with gsocket.socket() as s:
        with pytest.raises(stdlib_socket.gaierror):
            s.connect_ex(("name.invalid.", 80))
