"""Which tests the second hub backend has to run again.

CI runs the suite twice per Python: on uvloop (the default hub backend) and again with
``LOOP_BACKEND=asyncio``.  The second pass (``pytest --second-backend-pass``) leaves out what
it would only repeat:

* tests with a ``backend`` parameter, which run every backend in each pass already;
* the tests in :data:`REPEATED_AT_LENGTH`, each with the reason the pass has it covered;
* modules listed in :data:`HUB_FREE_MODULES`: the C core, the greenlet facade and the sans-IO
  protocol readers never reach the hub, so the backend cannot change what they see.  A module
  may be listed only while its source names no loop module but those in
  :data:`HUB_FREE_IMPORTS` (checked at collection by :func:`hub_reaching_names`, so a listed
  module that starts to use the hub fails the run instead of silently going untested).
"""
import ast
import textwrap

#: test modules (paths relative to tests/) that never reach the hub.
HUB_FREE_MODULES = {
    "test_http_parser.py",
    "test_http_head_scan.py",
    "test_proxy_protocol.py",
    "test_switch_basic.py",
    "test_switch_state.py",
    "test_switch_crash.py",
    "test_switch_sources.py",
    "test_stack_switch_c.py",
    "test_core_fuzz_regressions.py",
    "test_greenlet_facade.py",
    "fuzz/test_fiber_fuzz.py",
}

#: test ids (path relative to tests/ and name) that reach the hub but that the second pass would
#: only repeat at length -> why.
REPEATED_AT_LENGTH = {
    "test_soak.py::test_soak[GreenWorker]":
        "about 35 s; its server is the WSGIServer handler and hub of the WSGIServer soak, which "
        "this pass runs, inside gunicorn's process management, whose signals and wind-down on "
        "this backend test_worker.py covers",
}

#: the loop modules a hub-free test module may name (they never start a hub).
HUB_FREE_IMPORTS = ("loop._switch", "loop._protocols", "loop.compat.greenlet")

BACKENDS = ("uvloop", "asyncio")

def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _loop_names(tree, found):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.update("%s.%s" % (node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Del):
            name = _dotted(node)
            if name is not None:
                found.add(name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and "import " in node.value:
            # code handed to a subprocess (a string that merely names a module is not code)
            try:
                inner = ast.parse(textwrap.dedent(node.value))
            except (SyntaxError, ValueError):
                continue
            _loop_names(inner, found)


def hub_reaching_names(source):
    """The loop modules and names that ``source`` imports or uses (in its own code and in
    code it hands a subprocess as a string) outside :data:`HUB_FREE_IMPORTS`, sorted."""
    found = set()
    _loop_names(ast.parse(source), found)
    return sorted(name for name in found
                  if (name == "loop" or name.startswith("loop."))
                  and not any(name == allowed or name.startswith(allowed + ".")
                              for allowed in HUB_FREE_IMPORTS))


def runs_every_backend(item):
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("backend") in BACKENDS


def split_for_second_pass(items, relative_path):
    """(kept, deselected) for the second backend's pass; ``relative_path(item)`` gives the
    test module's path relative to tests/ with '/' separators."""
    kept, deselected = [], []
    for item in items:
        path = relative_path(item)
        if (path in HUB_FREE_MODULES or runs_every_backend(item)
                or "%s::%s" % (path, item.name) in REPEATED_AT_LENGTH):
            deselected.append(item)
        else:
            kept.append(item)
    return kept, deselected
