"""pool.Group and pool.Pool."""
import time

import pytest

import loop
from loop.pool import Group, Pool, PoolFull


def test_group_spawn_join_len():
    group = Group()
    for d in (0.01, 0.02):
        group.spawn(loop.sleep, d)
    assert len(group) == 2
    assert group.join(timeout=2)
    assert len(group) == 0


def test_group_add_discard_kill():
    group = Group()
    g = loop.spawn(loop.sleep, 10)
    group.add(g)
    assert g in group
    group.discard(g)
    assert g not in group
    group.add(g)
    group.spawn(loop.sleep, 10)
    group.kill()
    assert len(group) == 0 and g.dead


def test_group_join_raise_error(capsys):
    group = Group()
    group.spawn(loop.sleep, 1)
    group.spawn(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        group.join(raise_error=True)
    group.kill()
    capsys.readouterr()


def test_pool_limits_concurrency_and_free_count():
    pool = Pool(3)
    active, peak = [0], [0]

    def work(x):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        loop.sleep(0.005)
        active[0] -= 1
        return x * 2

    assert pool.free_count() == 3 and not pool.full()
    assert pool.map(work, range(10)) == [x * 2 for x in range(10)]
    assert peak[0] == 3
    for _ in range(3):
        pool.spawn(loop.sleep, 0.05)
    assert pool.full() and pool.free_count() == 0
    with pytest.raises(PoolFull):
        pool.add(loop.Greenlet(lambda: None), blocking=False)
    start = time.monotonic()
    assert pool.wait_available(timeout=2) >= 1
    assert time.monotonic() - start < 1
    pool.join()


def test_imap_ordered_and_unordered():
    pool = Pool(4)

    def delayed(x):
        loop.sleep(0.001 * (5 - x))
        return x

    assert list(pool.imap(delayed, range(5))) == [0, 1, 2, 3, 4]
    unordered = list(pool.imap_unordered(delayed, range(5)))
    assert sorted(unordered) == [0, 1, 2, 3, 4] and unordered != [0, 1, 2, 3, 4]
    assert list(pool.imap(lambda a, b: a + b, [1, 2], [10, 20])) == [11, 22]


def test_imap_raises_worker_error():
    pool = Pool(2)

    def f(x):
        if x == 2:
            raise ValueError(x)
        return x

    it = pool.imap(f, range(4))
    assert next(it) == 0 and next(it) == 1
    with pytest.raises(ValueError):
        next(it)


def test_apply_and_apply_async():
    pool = Pool(1)
    assert pool.apply(lambda a, b: a * b, (6, 7)) == 42
    got = []
    g = pool.apply_async(lambda: "r", callback=got.append)
    g.join()
    loop.sleep(0.01)
    assert got == ["r"]

    def nested():
        return pool.apply(lambda: "inner")  # would deadlock a full pool if not run inline

    assert pool.spawn(nested).get(timeout=2) == "inner"


def test_map_async():
    pool = Pool(2)
    g = pool.map_async(lambda x: x + 1, [1, 2, 3])
    assert g.get(timeout=2) == [2, 3, 4]


def test_unbounded_pool():
    pool = Pool()
    gs = [pool.spawn(loop.sleep, 0.01) for _ in range(50)]
    assert pool.free_count() >= 1 and not pool.full()
    loop.joinall(gs)
