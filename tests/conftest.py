"""After every test: the hub of the test process is back to empty.

A test that leaves a wakeup source registered (a sleep nobody ends, a thread pool job nobody
waits for, an fd wait of a green thread still blocked), a descriptor in the hub's fd table or a
green thread in the ready queue changes what the next test sees: a wait that should raise
``LoopExit`` hangs, or a descriptor number is reused with a stale registration.  So each test is
followed by a check.  Work the test started and that is about to end on its own (a green thread
finishing, a short timer, a pool job returning) is given a moment to settle first; only what is
still there after that counts.

Tests that keep something on purpose across tests (a module-scoped server, say) can be listed
in ``KEEPS_HUB_STATE`` with the reason.
"""
import time

import pytest

#: test node id -> why it may leave hub state behind.
KEEPS_HUB_STATE = {}

SETTLE_SECONDS = 1.0


def _hub_state(hub):
    return {
        "wakeup sources": hub.wakeup_registrations(),
        "fd table": sorted(set(hub._readers) | set(hub._writers)),
        "ready queue": list(hub._ready),
    }


def _settled(hub):
    return not hub.wakeup_sources and not hub._ready and not hub._readers \
        and not hub._writers


def _settle(hub):
    """Let the green threads and timers that the test left running finish (bounded)."""
    import loop
    from loop._switch import getcurrent
    if getcurrent() is hub.fiber or hub.fiber.dead or hub.loop.is_closed():
        return
    deadline = time.monotonic() + SETTLE_SECONDS
    for _ in range(5):
        loop.sleep(0)
    while not _settled(hub) and time.monotonic() < deadline:
        loop.sleep(0.005)
    # a collected socket forgets its fd registration in __del__
    if hub._readers or hub._writers:
        import gc
        gc.collect()
        loop.sleep(0)


def _clean_up(hub, state):
    """End what the test left behind, so that the next test starts from an empty hub: the
    green threads that wait get GreenletExit, hub timers are cancelled, fds forgotten."""
    import loop
    from loop._core.hub import HubTimer, Waiter
    from loop._switch import Fiber
    for key in state["wakeup sources"]:
        if isinstance(key, HubTimer):
            key.cancel()
            continue
        fiber = key.fiber if isinstance(key, Waiter) else key
        if isinstance(fiber, Fiber) and not fiber.dead and fiber.parent is hub.fiber:
            hub.interrupt(fiber, loop.GreenletExit())
    for fd in state["fd table"]:
        hub.forget_fd(fd)
    for _ in range(5):
        loop.sleep(0)


@pytest.fixture(autouse=True)
def hub_is_left_empty(request):
    yield
    from loop._core.hub import get_hub_if_exists
    hub = get_hub_if_exists()
    if hub is None or hub.adopted or hub._destroyed:
        return
    _settle(hub)
    if _settled(hub) or request.node.nodeid in KEEPS_HUB_STATE:
        return
    state = _hub_state(hub)
    _clean_up(hub, state)
    pytest.fail("the test left hub state behind (after %.1f s of settling): %r"
                % (SETTLE_SECONDS, {k: v for k, v in state.items() if v}), pytrace=False)
