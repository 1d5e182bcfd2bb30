"""Green select/poll/selectors sharing descriptors in the hub: several watchers of one
descriptor, and watchers next to a green thread that reads it."""
import os
import select as stdlib_select
import time

import pytest

import loop
from loop import select as gselect
from loop import selectors as gselectors
from loop import socket as gsocket
from loop.server import StreamServer

pytestmark = pytest.mark.timeout(30)

#: How late a wake-up may come.  The old implementation polled in 50 ms slices when a
#: descriptor was already watched.
PROMPT = 0.03


def _watchers(fd):
    slot = loop.get_hub()._readers.get(fd)
    return len(slot.watchers or ()) if slot is not None else 0


def test_two_green_threads_select_one_fd_and_both_wake_promptly():
    a, b = gsocket.socketpair()
    woke = []

    def watch():
        r, _, _ = gselect.select([a], [], [], 5)
        woke.append((time.monotonic(), r))

    threads = [loop.spawn(watch), loop.spawn(watch)]
    loop.sleep(0.02)
    assert _watchers(a.fileno()) == 2  # both registered in the hub, neither polling
    sent = time.monotonic()
    b.send(b"x")
    loop.joinall(threads, timeout=5)
    assert [r for _, r in woke] == [[a], [a]]
    assert max(t for t, _ in woke) - sent < PROMPT
    assert a.fileno() not in loop.get_hub()._readers  # nothing left behind
    a.close()
    b.close()


def test_select_on_fd_a_recv_waits_on_wakes():
    a, b = gsocket.socketpair()
    reader = loop.spawn(a.recv, 1)
    woke = []

    def watch():
        r, _, _ = gselect.select([a], [], [], 5)
        woke.append((time.monotonic(), r))

    watcher = loop.spawn(watch)
    loop.sleep(0.02)
    slot = loop.get_hub()._readers[a.fileno()]
    assert slot.waiter is not None and len(slot.watchers) == 1
    sent = time.monotonic()
    b.send(b"xy")  # recv(1) takes one byte; select sees the other
    assert reader.get(timeout=5) == b"x"
    watcher.join(timeout=5)
    assert woke and woke[0][1] == [a]
    assert woke[0][0] - sent < PROMPT
    a.close()
    b.close()


def test_plain_reads_still_refuse_a_second_reader_next_to_watchers():
    a, b = gsocket.socketpair()
    watcher = loop.spawn(gselect.select, [a], [], [], 5)
    reader = loop.spawn(a.recv, 1)
    loop.sleep(0.01)
    with pytest.raises(loop.ConcurrentObjectUseError):
        a.recv(1)
    b.send(b"zz")
    assert reader.get(timeout=5) == b"z"
    assert watcher.get(timeout=1)[0] == [a]
    a.close()
    b.close()


def test_poll_and_selector_watchers_share_fd():
    a, b = gsocket.socketpair()
    results = []

    def use_poll():
        p = gselect.poll()
        p.register(a, gselect.POLLIN)
        results.append(("poll", p.poll(5000)))

    def use_selector():
        with gselectors.DefaultSelector() as sel:
            sel.register(a, gselectors.EVENT_READ)
            results.append(("selector", [events for _, events in sel.select(5)]))

    threads = [loop.spawn(use_poll), loop.spawn(use_selector),
               loop.spawn(lambda: results.append(("select", gselect.select([a], [], [], 5)[0])))]
    loop.sleep(0.02)
    assert _watchers(a.fileno()) == 3
    b.send(b"x")
    loop.joinall(threads, timeout=5)
    assert sorted(results) == [("poll", [(a.fileno(), gselect.POLLIN)]),
                               ("select", [a]), ("selector", [gselectors.EVENT_READ])]
    a.close()
    b.close()


def test_select_timeout_and_raw_fds_leave_nothing_registered():
    r, w = os.pipe()
    hub = loop.get_hub()
    try:
        start = time.monotonic()
        assert gselect.select([r], [], [], 0.05) == ([], [], [])
        assert time.monotonic() - start >= 0.04
        assert r not in hub._readers and hub.wakeup_sources == 0
        loop.spawn_later(0.01, os.write, w, b"x")
        assert gselect.select([r, r], [], [r], 5)[0] == [r, r]  # listed twice: fine
        assert r not in hub._readers and hub.wakeup_sources == 0
    finally:
        os.close(r)
        os.close(w)


def test_closing_a_watched_socket_wakes_the_select():
    a, b = gsocket.socketpair()
    watcher = loop.spawn(gselect.select, [a], [], [], 5)
    loop.sleep(0.01)
    start = time.monotonic()
    a.close()
    watcher.join(timeout=5)
    assert time.monotonic() - start < 1
    # Like the stdlib's select on a closed socket: an error, not a hang.
    assert isinstance(watcher.exception, (OSError, ValueError))
    b.close()


def test_select_on_a_serving_listener_does_not_disturb_accepting():
    served = []

    def handle(sock, address):
        served.append(sock.recv(10))

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    try:
        watcher = loop.spawn(gselect.select, [server.socket], [], [], 0.3)
        loop.sleep(0.01)
        for i in range(3):
            with gsocket.create_connection(server.address, timeout=5) as client:
                client.sendall(b"hi%d" % i)
                loop.sleep(0.02)
        watcher.join(timeout=5)
        assert sorted(served) == [b"hi0", b"hi1", b"hi2"]
        slot = loop.get_hub()._readers[server.socket.fileno()]
        assert slot.callback is not None and slot.registered and not slot.watchers
    finally:
        server.stop()


def test_select_counts_as_a_wait_for_loop_exit():
    # Another process could write: an fd wait keeps LoopExit away, like wait_readable.
    r, w = os.pipe()
    try:
        loop.spawn_later(0.05, os.write, w, b"x")
        assert gselect.select([r], [], [])[0] == [r]
    finally:
        os.close(r)
        os.close(w)


def test_out_of_range_timeouts_fail_like_the_stdlib():
    # A ready descriptor, so every accepted timeout returns at once.
    r, w = os.pipe()
    os.write(w, b"x")
    try:
        cases = [(2 ** 64, 2 ** 31, 2 ** 31 - 1, 1.5e300, float("nan"), 9.3e12, 2 ** 40, -1),
                 (2 ** 64, 1.5e300, float("nan"), 9.3e9, 9.1e9, 2 ** 40, -1)]
        green_poll, real_poll = gselect.poll(), stdlib_select.poll()
        green_poll.register(r)
        real_poll.register(r)
        calls = [(green_poll.poll, real_poll.poll, cases[0]),
                 (lambda t: gselect.select([r], [], [], t),
                  lambda t: stdlib_select.select([r], [], [], t), cases[1])]
        for green, real, timeouts in calls:
            for timeout in timeouts:
                outcomes = []
                for call in (green, real):
                    try:
                        outcomes.append(("ok", call(timeout)))
                    except (OverflowError, ValueError) as exc:
                        outcomes.append((type(exc), str(exc)))
                assert outcomes[0] == outcomes[1], timeout
    finally:
        os.close(r)
        os.close(w)
