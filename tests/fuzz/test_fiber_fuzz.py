"""A bounded run of the green-thread fuzzer (fiber_fuzz.py next to this file).

Every seed runs in a worker process under a timeout; a crash, a hang, a broken invariant or a
difference from greenlet (where installed) fails the test and names the seed. Replay one with
``python tests/fuzz/fiber_fuzz.py --seeds N:N+1 --show``.

``LOOP_FUZZ_SEEDS`` sets how many seeds run (default 300, in batches of 100 per test); a long
run is ``python tests/fuzz/fiber_fuzz.py --seeds 0:10000 --jobs 2``.
"""
import os
import sys

import pytest

import fiber_fuzz

BATCH = 100
SEEDS = int(os.environ.get("LOOP_FUZZ_SEEDS", "300"))
COMPARE = fiber_fuzz.greenlet_available(sys.executable)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("start", range(0, SEEDS, BATCH))
def test_fuzz_seeds(start):
    seeds = range(start, min(start + BATCH, SEEDS))
    checked, failures = fiber_fuzz.check_seeds(sys.executable, seeds, COMPARE)
    assert not failures, "\n".join(failures)
    assert checked == len(seeds)

