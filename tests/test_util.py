"""util: print_run_info, assert_switches, the blocking monitor."""
import io
import os
import re
import time

import pytest

from script_helpers import run_python

import loop
from loop.util import assert_switches, format_run_info, print_run_info


def test_print_run_info_lists_green_threads_with_stacks():
    def parked_here():
        loop.sleep(10)

    g = loop.spawn(parked_here)
    loop.sleep(0)
    out = io.StringIO()
    print_run_info(file=out)
    text = out.getvalue()
    assert "Threads" in text and "Green threads" in text
    assert "parked_here" in text and "[hub]" in text
    lines = format_run_info(thread_stacks=False)
    assert any("parked_here" in line for line in lines)
    assert not any(line.startswith("Thread 0x") for line in lines)
    g.kill()


def test_assert_switches_passes_and_fails():
    with assert_switches():
        loop.sleep(0)
    with pytest.raises(AssertionError):
        with assert_switches():
            pass
    with pytest.raises(AssertionError):
        with assert_switches(max_blocking_time=0.01):
            time.sleep(0.05)
            loop.sleep(0)


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_blocking_monitor_reports_offender(backend):
    r = run_python("""
        import time, loop
        def hog_the_loop():
            time.sleep(0.3)
        g = loop.spawn(hog_the_loop)
        g.name = "hog"
        g.join()
        loop.sleep(0.2)
    """, {"LOOP_MAX_BLOCKING_TIME": "0.05", "LOOP_BACKEND": backend})
    assert r.returncode == 0, r.stderr
    assert "blocked the event loop" in r.stderr
    # the green thread by name (whichever quotes its repr uses) and the blocking frame
    assert re.search(r"""['"]hog['"]""", r.stderr) and "hog_the_loop" in r.stderr
    assert r.stderr.count("blocked the event loop") == 1


def test_blocking_monitor_is_off_by_default():
    assert loop.get_hub().blocking_monitor is None or "LOOP_MAX_BLOCKING_TIME" in os.environ
