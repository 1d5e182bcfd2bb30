"""The second backend's CI pass leaves out only what cannot differ between backends."""
import os
import subprocess
import sys

import pytest

from backend_passes import HUB_FREE_MODULES, REPEATED_AT_LENGTH, hub_reaching_names

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("module", sorted(HUB_FREE_MODULES))
def test_a_module_left_out_of_the_second_pass_never_reaches_the_hub(module):
    with open(os.path.join(TESTS, module), encoding="utf-8") as source:
        assert hub_reaching_names(source.read()) == []


def test_the_checker_sees_every_way_a_module_reaches_loop():
    source = (
        "import loop._switch\n"
        "from loop import queue\n"
        "from loop._core.hub import get_hub\n"
        "loop.spawn(print)\n"
        "CHILD = '''\nimport loop.socket\n'''\n"
        "from loop._protocols.http import Request\n"
        "from loop.compat import greenlet\n"
        "NAME = 'loop.pywsgi'  # a name in a string is no use of it\n"
    )
    assert hub_reaching_names(source) == ["loop._core.hub.get_hub", "loop.queue", "loop.socket",
                                          "loop.spawn"]


def test_second_pass_collects_the_rest_of_the_suite():
    def collected(*options):
        proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                               "-p", "no:cacheprovider", *options], cwd=os.path.dirname(TESTS),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return {line for line in proc.stdout.splitlines() if "::" in line}

    everything = collected()
    second = collected("--second-backend-pass")
    left_out = everything - second
    assert second < everything
    for node in left_out:
        module = node.split("::")[0][len("tests/"):]
        assert (module in HUB_FREE_MODULES or "uvloop" in node or "asyncio" in node
                or node[len("tests/"):] in REPEATED_AT_LENGTH), node
    # each test named as repeated at length exists, and is the one left out
    for name in REPEATED_AT_LENGTH:
        assert "tests/" + name in everything and "tests/" + name in left_out, name
    # what the hub decides is all still there: servers, monkey patching, the hub itself
    for module in ("test_hub.py", "test_pywsgi.py", "test_worker.py", "test_monkey.py"):
        assert any(node.startswith("tests/" + module) for node in second), module
    assert any(node.startswith("tests/test_switch_basic.py") for node in left_out)
