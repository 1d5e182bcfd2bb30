"""Greenlet links: one link is stored without a list, several in one; the two shapes must
behave the same for rawlink, unlink, has_links and firing order."""
import loop
from loop import Greenlet


def test_single_link_fires_once_and_is_dropped():
    seen = []
    g = Greenlet(lambda: 7)
    assert not g.has_links()
    g.rawlink(lambda src: seen.append(src.value))
    assert g.has_links()
    g.start()
    g.join()
    loop.sleep(0.01)
    assert seen == [7]
    assert not g.has_links()


def test_unlink_from_one_and_from_several():
    seen = []

    def a(src):
        seen.append("a")

    def b(src):
        seen.append("b")

    g = Greenlet(lambda: None)
    g.rawlink(a)
    g.unlink(b)                      # not linked: nothing changes
    assert g.has_links()
    g.unlink(a)
    assert not g.has_links()
    g.unlink(a)                      # nothing left to remove

    g.rawlink(a)
    g.rawlink(b)
    g.rawlink(a)
    g.unlink(a)                      # every link to a goes
    assert g.has_links()
    g.rawlink(a)
    g.start()
    g.join()
    loop.sleep(0.01)
    assert seen == ["b", "a"]        # in the order they were added


def test_falsy_callback_is_still_a_link():
    class Falsy:
        def __init__(self):
            self.calls = 0

        def __len__(self):
            return 0

        def __call__(self, src):
            self.calls += 1

    cb = Falsy()
    g = Greenlet(lambda: None)
    g.rawlink(cb)
    assert g.has_links()
    g.start()
    g.join()
    loop.sleep(0.01)
    assert cb.calls == 1


def test_kill_before_start_fires_a_single_link():
    seen = []
    g = Greenlet(lambda: None)
    g.rawlink(lambda src: seen.append(src.dead))
    g.kill()
    loop.sleep(0.01)
    assert seen == [True]


def test_joinall_and_join_of_the_same_green_thread():
    g = loop.spawn(loop.sleep, 0.01)
    other = loop.spawn(lambda: g.join())       # a second link while joinall holds the first
    done = loop.joinall([g, other])
    assert set(done) == {g, other} and g.successful() and other.successful()
