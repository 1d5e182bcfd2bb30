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
import os
import time

import pytest

from backend_passes import split_for_second_pass

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

def pytest_addoption(parser):
    parser.addoption("--second-backend-pass", action="store_true",
                     help="leave out the tests another hub backend would only repeat "
                          "(see tests/backend_passes.py)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--second-backend-pass"):
        return

    def relative_path(item):
        return os.path.relpath(str(item.path), TESTS_DIR).replace(os.sep, "/")

    kept, deselected = split_for_second_pass(items, relative_path)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


#: test node id -> why it may leave hub state behind.
KEEPS_HUB_STATE = {}

SETTLE_SECONDS = 1.0


def _hub_state(hub):
    return {
        "wakeup sources": hub.wakeup_registrations(),
        "fd table": hub.watched_fds(),
        "ready queue": hub.ready_entries(),
    }


def _settled(hub):
    return not hub.wakeup_sources and not hub.ready_entries() and not hub.watched_fds()


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
    if hub.watched_fds():
        import gc
        gc.collect()
        loop.sleep(0)


def _clean_up(hub, state):
    """End what the test left behind, so that the next test starts from an empty hub: the
    green threads that wait or are ready get GreenletExit, hub timers are cancelled, fds
    forgotten."""
    import loop
    from loop._core.hub import HubTimer
    from loop._core.waiter import Waiter
    from loop._switch import Fiber
    fibers = []
    for key in state["wakeup sources"]:
        if isinstance(key, HubTimer):
            key.cancel()
        else:
            fibers.append(key.fiber if isinstance(key, Waiter) else key)
    # a green thread that never waits (it only yields) is seen in the ready queue alone
    fibers.extend(entry[0] if isinstance(entry, tuple) else entry
                  for entry in state["ready queue"])
    for fiber in dict.fromkeys(fibers):
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
    if hub is None or hub.adopted or hub.destroyed or _settled(hub):
        return
    _settle(hub)
    if _settled(hub) or request.node.nodeid in KEEPS_HUB_STATE:
        return
    state = _hub_state(hub)
    _clean_up(hub, state)
    pytest.fail("the test left hub state behind (after %.1f s of settling): %r"
                % (SETTLE_SECONDS, {k: v for k, v in state.items() if v}), pytrace=False)
