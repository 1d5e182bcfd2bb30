"""The rules of the package layout (``docs/design.md``, "Layers"), as tests that fail when broken.

1. Only ``loop/_core/`` switches: no module outside it calls ``.switch``/``.throw`` (the source is
   parsed, not grepped, so comments and strings do not count and a bound method handed on as a
   callback does).
2. The core imports nothing of loop above it, and no module outside the core is part of an
   import cycle, imports made inside functions included.
3. The sans-IO HTTP reader imports and parses without the C extension; ``import loop`` alone
   loads neither the extension, asyncio nor the hub.
4. Code and docs refer to nothing outside the repository.

(The design's third rule, that the hub is left empty after every test, is the autouse fixture
in ``tests/conftest.py``; ``test_leak_check_*`` below checks that fixture.)

Each rule is a function over a source tree.  The tests run it on this checkout and also on small
trees written to ``tmp_path`` that break the rule on purpose: a checker that stopped being able
to fail would otherwise pass forever unnoticed.
"""
import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = "loop"
CORE = "loop._core"
C_EXTENSION = "loop._switch"


# ------------------------------------------------------------------------------------------------
# Reading a source tree

def python_modules(src, package=PACKAGE):
    """Dotted module name -> path, for every ``.py`` file of ``package`` under ``src``."""
    modules = {}
    for path in sorted((Path(src) / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def extension_modules(src, package=PACKAGE):
    """Dotted names of the compiled modules of ``package`` (``_switch.cpython-312-....so``)."""
    names = set()
    for pattern in ("*.so", "*.pyd"):
        for path in (Path(src) / package).rglob(pattern):
            parts = list(path.relative_to(src).parts)
            parts[-1] = parts[-1].split(".")[0]
            names.add(".".join(parts))
    return names


def in_package(module, package):
    return module == package or module.startswith(package + ".")


def where(path, src):
    """A path as the messages show it: relative to the directory that holds ``src``."""
    return Path(path).relative_to(Path(src).parent).as_posix()


def _parse(path):
    return ast.parse(Path(path).read_text(encoding="utf-8"), str(path))


def _is_type_checking_block(node):
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ScopedVisitor(ast.NodeVisitor):
    """Keeps the qualified name of the function or class being visited in ``self.scope``;
    skips ``if TYPE_CHECKING:`` bodies (they never run)."""

    def __init__(self):
        self.scope = []
        self.functions = 0  # how many of the enclosing scopes are functions

    def _enter(self, node):
        is_function = not isinstance(node, ast.ClassDef)
        self.scope.append(node.name)
        self.functions += is_function
        self.generic_visit(node)
        self.functions -= is_function
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _enter

    def visit_If(self, node):
        if _is_type_checking_block(node):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    @property
    def qualname(self):
        return ".".join(self.scope) or "<module>"


# ------------------------------------------------------------------------------------------------
# Rule 1: only the core switches

SWITCHING_METHODS = frozenset({"switch", "throw"})

#: (file relative to src, qualified function name) -> why a ``.switch``/``.throw`` there is not
#: a fiber switch (a generator's or a coroutine's ``throw``, say).  Keep entries narrow: an entry
#: that no longer matches anything fails the test and must be removed.
NOT_FIBER_SWITCHES = {}


class _SwitchFinder(_ScopedVisitor):
    def __init__(self):
        super().__init__()
        self.found = []  # (line, qualified function, what)

    def visit_Attribute(self, node):
        # Any use of the attribute, not only a call: ``call_soon(fiber.switch, value)`` switches
        # just the same, later.
        if node.attr in SWITCHING_METHODS:
            self.found.append((node.lineno, self.qualname, "." + node.attr))
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else \
            func.attr if isinstance(func, ast.Attribute) else None
        if name in ("getattr", "methodcaller", "attrgetter"):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and arg.value in SWITCHING_METHODS:
                    self.found.append((node.lineno, self.qualname, "%s(..., %r)"
                                       % (name, arg.value)))
        self.generic_visit(node)


def switch_uses(path):
    finder = _SwitchFinder()
    finder.visit(_parse(path))
    return finder.found


def switches_outside_core(src, allowed=NOT_FIBER_SWITCHES, package=PACKAGE, core=CORE):
    """-> (violations as "file:line (function): .switch", allow-list entries matching nothing)."""
    violations, used = [], set()
    for module, path in python_modules(src, package).items():
        if in_package(module, core):
            continue
        relative = path.relative_to(src).as_posix()
        for line, function, what in switch_uses(path):
            if (relative, function) in allowed:
                used.add((relative, function))
            else:
                violations.append("%s:%d (%s): %s" % (where(path, src), line, function, what))
    return violations, sorted(set(allowed) - used)


#: How docs/design.md must say it (either wording), so that the doc and this test stay in step.
DESIGN_NAMES_THE_SWITCHING_PACKAGE = re.compile(
    r"\bonly\s+`?(?:src/)?loop/_core/?`?\s+switch(?:es)?\b"
    r"|`?(?:src/)?loop/_core/?`?[^.]{0,80}\b(?:one|only)\s+package\s+that\s+switch(?:es)?\b",
    re.IGNORECASE)


def _switching_section(essay):
    """The sections of an essay whose heading (a line underlined with ``=``/``-``) speaks of
    switching; the whole essay when it has none."""
    sections = re.split(r"\n(?=[^\n]+\n[=-]{3,}\n)", essay)
    switching = [text for text in sections
                 if re.match(r"[^\n]*switch[^\n]*\n[=-]{3,}\n", text, re.IGNORECASE)]
    return "\n".join(switching) if switching else essay


def core_modules_missing_from_essay(src, package=PACKAGE, core=CORE):
    """The modules of the core that switch but are not named in the core package's essay (the
    docstring of its ``__init__.py``, which docs/design.md points to for that list)."""
    modules = python_modules(src, package)
    essay = _switching_section(ast.get_docstring(_parse(modules[core])) or "")
    missing = []
    for module, path in modules.items():
        if not in_package(module, core) or module == core or not switch_uses(path):
            continue
        leaf = re.escape(module.rpartition(".")[2])
        named = re.search(r"\b%s\.py\b|_core[./]%s\b|`%s`|:mod:`[~\w.]*\.%s`"
                          % (leaf, leaf, leaf, leaf), essay)
        if not named:
            missing.append(module)
    return missing


def test_only_the_core_switches():
    # Guards the checker against reading nothing: the core itself does switch.
    assert any(switch_uses(path) for module, path in python_modules(SRC).items()
               if in_package(module, CORE))
    violations, stale = switches_outside_core(SRC)
    assert not violations, (
        "only loop/_core/ may switch fibers (docs/design.md, 'Layers'); wait through the core's "
        "primitives instead:\n  " + "\n  ".join(violations))
    assert not stale, "NOT_FIBER_SWITCHES entries that match nothing any more: %r" % (stale,)


def test_design_doc_names_the_one_package_that_switches():
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    assert DESIGN_NAMES_THE_SWITCHING_PACKAGE.search(text), (
        "docs/design.md no longer says that loop/_core/ is the one package that switches "
        "(e.g. 'Only `loop/_core/` switches'); this test checks that rule")


def test_core_essay_names_the_modules_that_switch():
    missing = core_modules_missing_from_essay(SRC)
    assert not missing, (
        "these modules of loop._core switch fibers but the essay of src/loop/_core/__init__.py "
        "does not name them (as `name`, name.py or loop._core.name): %s" % ", ".join(missing))


# ------------------------------------------------------------------------------------------------
# Rule 2: the import graph

def _ancestors(module):
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _lazy_names(init_path):
    """``{attribute: module}`` from a package's ``_LAZY = {module: (names...)}`` (PEP 562), so
    that ``from loop import sleep`` counts as importing the module ``sleep`` comes from."""
    for node in _parse(init_path).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            try:
                table = ast.literal_eval(node.value)
            except ValueError:
                return {}
            return {name: module for module, names in table.items() for name in names}
    return {}


class _ImportFinder(_ScopedVisitor):
    """Collects ``imports`` (dotted name, node, function) and ``from_imports`` (base module,
    imported names, node, function); function is None at module level."""

    def __init__(self, module, is_package):
        super().__init__()
        self.module, self.is_package = module, is_package
        self.imports, self.from_imports = [], []

    @property
    def function(self):
        # a class body runs at import time, like the module's own code
        return self.qualname if self.functions else None

    def visit_Import(self, node):
        for alias in node.names:
            self.imports.append((alias.name, node, self.function))

    def visit_ImportFrom(self, node):
        base = node.module
        if node.level:
            parts = self.module.split(".")
            if not self.is_package:
                parts.pop()
            parts = parts[:len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        self.from_imports.append((base, [alias.name for alias in node.names], node,
                                  self.function))

    def visit_Call(self, node):
        # importlib.import_module("a.b") / __import__("a.b") with a literal name
        func = node.func
        name = func.id if isinstance(func, ast.Name) else \
            func.attr if isinstance(func, ast.Attribute) else None
        if name in ("import_module", "__import__") and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            self.imports.append((node.args[0].value, node, self.function))
        self.generic_visit(node)


class ImportGraph:
    """The import graph of ``package`` under ``src``: ``edges[a][b] = (line, function)`` where
    module ``a`` imports module ``b`` (at module level when function is None; the module-level
    import is shown when there are several); ``sites`` lists every import.

    ``import a.b.c`` and ``from a.b.c import x`` also run the ``__init__`` of ``a`` and ``a.b``,
    so they count as imports of those packages too -- except of the packages that contain the
    importing module itself, which are already running or done by the time it runs.  ``from
    a.b import c`` imports the submodule ``a.b.c`` when there is one, else ``a.b`` (and, where
    ``a.b`` loads names lazily from a ``_LAZY`` table, the module that defines ``c``)."""

    def __init__(self, src, package=PACKAGE):
        self.src = Path(src)
        self.package = package
        self.paths = python_modules(src, package)
        known = set(self.paths) | extension_modules(src, package)
        packages = {m for m, p in self.paths.items() if p.name == "__init__.py"}
        lazy = {p: _lazy_names(self.paths[p]) for p in packages}
        self.edges = {}
        self.sites = []  # every import: (module, target, line, function or None)
        for module, path in self.paths.items():
            finder = _ImportFinder(module, module in packages)
            finder.visit(_parse(path))
            own_packages = set(_ancestors(module))
            edges = self.edges[module] = {}

            def add(target, line, function, implied=False):
                if not in_package(target, package) or target == module:
                    return
                if implied and target in own_packages:
                    return
                self.sites.append((module, target, line, function))
                # an edge is shown by its module-level import when it has one
                if target not in edges or (function is None and edges[target][1] is not None):
                    edges[target] = (line, function)

            for target, node, function in finder.imports:
                for ancestor in _ancestors(target):
                    add(ancestor, node.lineno, function, implied=True)
                add(target, node.lineno, function)
            for base, names, node, function in finder.from_imports:
                for ancestor in _ancestors(base):
                    add(ancestor, node.lineno, function, implied=True)
                attributes = [n for n in names if "%s.%s" % (base, n) not in known]
                for name in names:
                    if name not in attributes:
                        add("%s.%s" % (base, name), node.lineno, function)
                # ``from a.b import c`` with c a submodule still runs a.b's __init__
                add(base, node.lineno, function, implied=not attributes)
                for name in attributes:
                    if name in lazy.get(base, {}):
                        add(lazy[base][name], node.lineno, function)

    def describe(self, source, target):
        line, function = self.edges[source][target]
        return "%s:%d%s imports %s" % (where(self.paths[source], self.src), line,
                                      " (in %s)" % function if function else "", target)

    def strongly_connected_components(self):
        """Tarjan's algorithm, iterative; components of more than one module only."""
        index, low, on_stack, stack, components = {}, {}, set(), [], []
        counter = 0
        for root in self.edges:
            if root in index:
                continue
            work = [(root, iter(self.edges.get(root, ())))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            while work:
                node, children = work[-1]
                for child in children:
                    if child not in index:
                        index[child] = low[child] = counter
                        counter += 1
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, iter(self.edges.get(child, ()))))
                        break
                    if child in on_stack:
                        low[node] = min(low[node], index[child])
                else:
                    work.pop()
                    if work:
                        parent = work[-1][0]
                        low[parent] = min(low[parent], low[node])
                    if low[node] == index[node]:
                        component = []
                        while True:
                            member = stack.pop()
                            on_stack.discard(member)
                            component.append(member)
                            if member == node:
                                break
                        if len(component) > 1:
                            components.append(sorted(component))
        return components

    def shortest_cycle_through(self, start, members):
        """The shortest import cycle from ``start`` back to it inside ``members``."""
        previous = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for child in self.edges.get(node, ()):
                if child == start:
                    path = [node]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    path.reverse()
                    return path + [start]
                if child in members and child not in previous:
                    previous[child] = node
                    queue.append(child)
        raise AssertionError("no cycle through %s" % start)


def core_imports_from_above(graph, core=CORE, allowed=(C_EXTENSION,)):
    """Imports by a core module of a loop module outside the core (other than the extension)."""
    return [graph.describe(module, target)
            for module, targets in sorted(graph.edges.items()) if in_package(module, core)
            for target in sorted(targets)
            if not in_package(target, core) and target not in allowed]


def cycles_outside_core(graph, core=CORE):
    """Each import cycle that a module outside the core is part of, as a readable path with
    the line that makes each step."""
    reports, seen = [], set()
    for component in graph.strongly_connected_components():
        members = set(component)
        for module in component:
            if in_package(module, core):
                continue
            cycle = graph.shortest_cycle_through(module, members)
            steps = cycle[:-1]
            key = frozenset(zip(steps, cycle[1:]))
            if key in seen:
                continue
            seen.add(key)
            reports.append(" -> ".join(cycle) + "".join(
                "\n      " + graph.describe(a, b) for a, b in zip(cycle, cycle[1:])))
    return reports


def core_imports_in_functions_that_break_no_cycle(graph, core=CORE):
    """In-function imports of a core module by a core module that could be at module level:
    the imported module does not reach back to the importer through module-level imports, so
    no import-time cycle is broken by deferring it.  (An in-function import that does break
    one must say which in a comment; see core_imports_in_functions_without_a_comment.)"""
    module_level = {module: [t for t, (_, function) in targets.items() if function is None]
                    for module, targets in graph.edges.items()}

    def reaches(start, goal):
        seen, queue = {start}, deque([start])
        while queue:
            for child in module_level.get(queue.popleft(), ()):
                if child == goal:
                    return True
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
        return False

    return ["%s:%d (in %s) imports %s" % (where(graph.paths[module], graph.src), line, function,
                                          target)
            for module, target, line, function in graph.sites
            if function is not None and in_package(module, core) and in_package(target, core)
            and target != core and not reaches(target, module)]


def core_imports_in_functions_without_a_comment(graph, core=CORE):
    """In-function imports of a loop module in the core with no comment on their line or the
    three lines above (the comment names the cycle the deferral breaks)."""
    found = set()
    for module, target, line, function in graph.sites:
        if function is None or not in_package(module, core):
            continue
        lines = graph.paths[module].read_text(encoding="utf-8").splitlines()
        nearby = "\n".join(lines[max(0, line - 4):line])
        if "#" not in nearby:
            found.add("%s:%d (in %s)" % (where(graph.paths[module], graph.src), line, function))
    return sorted(found)


@pytest.fixture(scope="module")
def import_graph():
    return ImportGraph(SRC)


def test_core_imports_nothing_above_it(import_graph):
    found = core_imports_from_above(import_graph)
    assert not found, (
        "loop._core may import only itself, %s, the standard library and asyncio/uvloop; "
        "let the upper layer register what the core needs instead:\n  %s"
        % (C_EXTENSION, "\n  ".join(found)))


def test_no_module_outside_the_core_is_part_of_an_import_cycle(import_graph):
    cycles = cycles_outside_core(import_graph)
    assert not cycles, ("import cycles (in-function imports included) through modules outside "
                        "loop._core:\n  " + "\n  ".join(cycles))


def test_core_defers_an_import_only_to_break_a_cycle(import_graph):
    needless = core_imports_in_functions_that_break_no_cycle(import_graph)
    assert not needless, ("in-function imports in loop._core that break no import-time cycle "
                          "(move them to the top of the module):\n  " + "\n  ".join(needless))
    silent = core_imports_in_functions_without_a_comment(import_graph)
    assert not silent, ("in-function imports in loop._core without a comment naming the cycle "
                        "they break:\n  " + "\n  ".join(silent))


def test_import_graph_sees_the_package(import_graph):
    # Guards the checkers against a layout change that makes them read nothing.
    assert any(in_package(m, CORE) for m in import_graph.paths)
    assert any(in_package(t, CORE) for t in import_graph.edges["loop.queue"])


# ------------------------------------------------------------------------------------------------
# Rule 3: what importing costs

HTTP_READER_WITHOUT_C_EXTENSION = r"""
import sys
sys.modules["loop._switch"] = None  # as where the extension was never built: importing it fails
from loop._protocols.http import END_OF_MESSAGE, Request, RequestReader
reader = RequestReader()
reader.feed(b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
request = reader.next_event()
assert isinstance(request, Request), request
assert (request.method, request.target, request.version) == ("POST", b"/p?q=1", "HTTP/1.1")
assert reader.next_event() == b"hi"
assert reader.next_event() is END_OF_MESSAGE
print("parsed", request)
"""

IMPORT_LOOP_ALONE = r"""
import sys
heavy = ("asyncio", "uvloop", "concurrent.futures")
assert not [m for m in heavy if m in sys.modules], "imported at startup: the check means nothing"
import loop
loaded = sorted(m for m in sys.modules
                if m in heavy or m.split(".")[0] in heavy or m.startswith("loop."))
assert not loaded, "import loop loaded %s" % (loaded,)
print("loaded nothing but loop")
"""

LAZY_NAMES_THEN_FAST_LOOKUPS = r"""
import dis
import loop
loop.sleep  # the first use loads the lazy names
def use():
    return loop.sleep, loop.spawn, loop.Timeout, loop.event
for _ in range(1000):  # past the interpreter's warm-up, so its attribute loads are specialized
    use()
loads = [i.opname for i in dis.get_instructions(use, adaptive=True) if "ATTR" in i.opname]
assert loads == ["LOAD_ATTR_MODULE"] * 4, loads
assert loop.event.Event is not None and loop.GreenletExit is not None
print("specialized")
"""


def run_with_src(code, src):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)


def test_http_reader_imports_and_parses_without_the_c_extension():
    proc = run_with_src(HTTP_READER_WITHOUT_C_EXTENSION, SRC)
    assert proc.returncode == 0, proc.stderr
    assert "parsed <Request POST" in proc.stdout


def test_import_loop_loads_neither_the_extension_nor_asyncio_nor_the_hub():
    proc = run_with_src(IMPORT_LOOP_ALONE, SRC)
    assert proc.returncode == 0, proc.stderr
    assert "loaded nothing but loop" in proc.stdout


def test_lazy_names_leave_loop_attribute_lookups_as_fast_as_a_plain_module():
    # A module that keeps a __getattr__ gets no specialized attribute loads (loop.sleep(0) in a
    # program's loop paid a generic lookup each time).
    proc = run_with_src(LAZY_NAMES_THEN_FAST_LOOKUPS, SRC)
    assert proc.returncode == 0, proc.stderr
    assert "specialized" in proc.stdout


# ------------------------------------------------------------------------------------------------
# Rule 4: nothing refers outside the repository

SCANNED = ("src", "docs", "tests", "bench", "examples", "README.md")
SKIPPED_DIRECTORIES = {"__pycache__", "build", "node_modules"}
TEXT_SUFFIXES = {".py", ".pyi", ".pyx", ".c", ".h", ".md", ".rst", ".txt", ".toml", ".cfg",
                 ".ini", ".yml", ".yaml", ".json", ".sh", ".html", ".js", ".css", ".ts"}

#: Patterns that name notes kept outside the repository (written so this file does not match).
OUTSIDE_NOTES = (
    (re.compile(r"\btrap\s+T\d", re.IGNORECASE),
     "a numbered trap from notes outside the repository"),
    (re.compile(r"\bresearch[/]"), "a path into research notes outside the repository"),
    (re.compile(r"\.\./shared\b"), "a path into a shared directory beside the repository"),
)
#: A relative path going up (two dots, a slash, then more): from the file's directory it must
#: resolve to something that exists inside the repository.
RELATIVE_PATH = re.compile(r"(?<![\w./-])(?:\.\./)+[\w.\-/]*")


def _scanned_files(root, scanned):
    for name in scanned:
        top = Path(root) / name
        if top.is_file():
            yield top
            continue
        for directory, subdirectories, files in os.walk(top):
            subdirectories[:] = sorted(d for d in subdirectories
                                       if d not in SKIPPED_DIRECTORIES and not d.startswith("."))
            for file in sorted(files):
                path = Path(directory) / file
                if path.suffix in TEXT_SUFFIXES:
                    yield path


def references_outside(root, scanned=SCANNED):
    """Lines that point outside the repository at ``root``, as "file:line: why: text"."""
    root = Path(root)
    top = os.path.normpath(root)
    found = []
    for path in _scanned_files(root, scanned):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        relative = path.relative_to(root).as_posix()
        for number, line in enumerate(text.splitlines(), 1):
            reasons = [why for pattern, why in OUTSIDE_NOTES if pattern.search(line)]
            for match in RELATIVE_PATH.finditer(line):
                relative_path = match.group().rstrip(".,")
                target = os.path.normpath(os.path.join(path.parent, relative_path))
                if os.path.commonpath([top, target]) != top:
                    reasons.append("%s leaves the repository" % relative_path)
                elif not os.path.exists(target):
                    reasons.append("%s names nothing in the repository" % relative_path)
            for why in reasons:
                found.append("%s:%d: %s: %s" % (relative, number, why, line.strip()[:100]))
    return found


def test_nothing_refers_to_notes_outside_the_repository():
    found = references_outside(ROOT)
    assert not found, ("comments and docs may refer only to what is in the repository:\n  "
                       + "\n  ".join(found))


# ------------------------------------------------------------------------------------------------
# Each checker fails when its rule is broken (synthetic trees)

def write_tree(root, files):
    for name, text in files.items():
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return Path(root)


CORE_ESSAY = '''"""The core.

Modules
=======
``hub.py``, ``greenlet.py``, ``timeout.py``, ``event.py``.

Which modules switch
====================
`hub` (parks and wakes), greenlet.py (kill).
"""
'''


def test_switch_checker_finds_switches_outside_the_core(tmp_path):
    src = write_tree(tmp_path / "src", {
        "loop/__init__.py": "",
        "loop/_core/__init__.py": CORE_ESSAY,
        "loop/_core/hub.py": "def park(hub):\n    return hub.fiber.switch()\n",
        "loop/lock.py": """\
            import operator
            class Lock:
                def acquire(self, fiber):
                    fiber.throw(ValueError)
            def later(loop, fiber):
                loop.call_soon(fiber.switch, 1)
            def indirect(fiber):
                getattr(fiber, "switch")()
                operator.methodcaller("throw", ValueError)(fiber)
            # a comment saying fiber.switch() is fine, and so is "fiber.switch()" in a string
            """,
        "loop/gen.py": """\
            def close_generator(gen):
                gen.throw(GeneratorExit)
            """,
    })
    violations, stale = switches_outside_core(src, allowed={})
    assert violations == [
        "src/loop/gen.py:2 (close_generator): .throw",
        "src/loop/lock.py:4 (Lock.acquire): .throw",
        "src/loop/lock.py:6 (later): .switch",
        "src/loop/lock.py:8 (indirect): getattr(..., 'switch')",
        "src/loop/lock.py:9 (indirect): methodcaller(..., 'throw')",
    ]
    assert stale == []
    # An allow-list entry excuses exactly its function, and is reported once it matches nothing.
    allowed = {("loop/gen.py", "close_generator"): "a generator's throw",
               ("loop/gen.py", "gone"): "a function that was removed"}
    violations, stale = switches_outside_core(src, allowed=allowed)
    assert not [v for v in violations if "gen.py" in v]
    assert len(violations) == 4
    assert stale == [("loop/gen.py", "gone")]


def test_core_essay_checker_finds_a_switching_module_it_does_not_name(tmp_path):
    src = write_tree(tmp_path / "src", {
        "loop/__init__.py": "",
        "loop/_core/__init__.py": CORE_ESSAY,
        "loop/_core/hub.py": "def park(hub):\n    return hub.fiber.switch()\n",
        "loop/_core/greenlet.py": "def kill(g):\n    g.throw()\n",
        "loop/_core/timeout.py": "def fire(g):\n    g.throw()\n",
        "loop/_core/event.py": "def wait(waiter):\n    return waiter.get()\n",
    })
    assert core_modules_missing_from_essay(src) == ["loop._core.timeout"]


def test_design_doc_pattern_needs_the_rule_stated():
    assert DESIGN_NAMES_THE_SWITCHING_PACKAGE.search("1. **Only `loop/_core/` switches.** No...")
    assert DESIGN_NAMES_THE_SWITCHING_PACKAGE.search(
        "`loop/_core/` is the one package\nthat switches fibers")
    assert not DESIGN_NAMES_THE_SWITCHING_PACKAGE.search(
        "The hub and loop/greenlet.py switch; see `loop/_core/` for the hub.")


LAYERED_TREE = {
    "loop/__init__.py": """\
        _LAZY = {"loop._core.api": ("spawn", "sleep")}
        def __getattr__(name):
            import importlib
            return getattr(importlib.import_module("loop._core.api"), name)
        """,
    "loop/_switch.cpython-312-x86_64-linux-gnu.so": "",
    "loop/_core/__init__.py": "",
    "loop/_core/hub.py": """\
        from loop._switch import getcurrent
        def threadpool():
            from loop._core import threadpool  # breaks the cycle hub -> threadpool -> hub
            return threadpool
        """,
    "loop/_core/threadpool.py": "from . import hub\n",
    "loop/_core/api.py": "from loop._core.hub import getcurrent\n",
    "loop/monkey/__init__.py": """\
        from loop.monkey._registry import record
        def patch_all():
            from loop import socket
        """,
    "loop/monkey/_registry.py": "from loop._core import hub\n",
    "loop/socket.py": "import loop._core.hub\n",
    "loop/queue.py": "import loop\nfrom loop import sleep\n",
    "loop/lock.py": """\
        class Lock:
            from loop._core.hub import getcurrent
            def acquire(self):
                from loop import queue
        """,
}


def test_import_graph_resolves_imports_as_python_runs_them(tmp_path):
    graph = ImportGraph(write_tree(tmp_path / "src", LAYERED_TREE))
    edges = {module: sorted(targets) for module, targets in graph.edges.items()}
    # relative and in-function imports; the extension is a module; own packages are no edge
    assert edges["loop._core.hub"] == ["loop._core.threadpool", "loop._switch"]
    assert graph.edges["loop._core.hub"]["loop._core.threadpool"] == (3, "threadpool")
    assert edges["loop._core.threadpool"] == ["loop._core.hub"]
    # ``import a.b.c`` runs the __init__ of a.b too (a is the importer's own package here)
    assert edges["loop.socket"] == ["loop._core", "loop._core.hub"]
    # ``from loop import socket`` is the submodule
    assert edges["loop.monkey"] == ["loop.monkey._registry", "loop.socket"]
    # a name that a package loads lazily counts as an import of the module that defines it
    assert edges["loop.queue"] == ["loop", "loop._core.api"]
    # a class body runs at import time; a method does not
    assert graph.edges["loop.lock"] == {"loop._core": (2, None), "loop._core.hub": (2, None),
                                        "loop.queue": (4, "Lock.acquire")}
    # importlib with a literal name is an import
    assert edges["loop"] == ["loop._core", "loop._core.api"]
    assert edges["loop.monkey._registry"] == ["loop._core", "loop._core.hub"]


def test_import_checkers_find_upward_imports_and_cycles(tmp_path):
    graph = ImportGraph(write_tree(tmp_path / "src", LAYERED_TREE))
    # As written the tree keeps the rules: its one cycle is inside the core.
    assert core_imports_from_above(graph) == []
    assert graph.strongly_connected_components() == [["loop._core.hub", "loop._core.threadpool"]]
    assert cycles_outside_core(graph) == []
    assert core_imports_in_functions_that_break_no_cycle(graph) == []
    assert core_imports_in_functions_without_a_comment(graph) == []

    broken = dict(LAYERED_TREE)
    # the core reaches up (the import of the core's own package ``loop`` is no edge) ...
    broken["loop/_core/api.py"] = "from loop._core.hub import getcurrent\nimport loop.queue\n"
    # ... and importing loop.monkey._registry runs loop.monkey's __init__, which imports
    # loop.socket inside patch_all: a cycle hidden in a function
    broken["loop/socket.py"] = "import loop._core.hub\nfrom loop.monkey._registry import record\n"
    # ... and the core defers an import that breaks no cycle, without saying why
    broken["loop/_core/api.py"] += "def later():\n    from loop._core import threadpool\n"
    graph = ImportGraph(write_tree(tmp_path / "broken" / "src", broken))
    assert core_imports_in_functions_that_break_no_cycle(graph) == [
        "src/loop/_core/api.py:4 (in later) imports loop._core.threadpool"]
    assert core_imports_in_functions_without_a_comment(graph) == [
        "src/loop/_core/api.py:4 (in later)"]
    assert core_imports_from_above(graph) == ["src/loop/_core/api.py:2 imports loop.queue"]
    cycles = cycles_outside_core(graph)
    heads = sorted(c.split("\n")[0] for c in cycles)
    assert heads == ["loop -> loop._core.api -> loop.queue -> loop",
                     "loop.monkey -> loop.socket -> loop.monkey",
                     "loop.queue -> loop._core.api -> loop.queue"], cycles
    socket_cycle = next(c for c in cycles if c.startswith("loop.monkey -> loop.socket"))
    assert socket_cycle.split("\n")[1:] == [
        "      src/loop/monkey/__init__.py:3 (in patch_all) imports loop.socket",
        "      src/loop/socket.py:2 imports loop.monkey"]


def test_import_cost_checks_fail_when_imports_are_heavy(tmp_path):
    src = write_tree(tmp_path / "src", {
        "loop/__init__.py": "import asyncio\n",
        "loop/_protocols/__init__.py": "",
        "loop/_protocols/http.py": "from loop._switch import getcurrent\n",
    })
    proc = run_with_src(HTTP_READER_WITHOUT_C_EXTENSION, src)
    assert proc.returncode != 0 and "import of loop._switch halted" in proc.stderr, proc.stderr
    proc = run_with_src(IMPORT_LOOP_ALONE, src)
    assert proc.returncode != 0 and "import loop loaded ['asyncio'" in proc.stderr, proc.stderr


def test_outside_reference_checker_finds_each_kind(tmp_path):
    # Built from pieces so that this file itself does not match the patterns.  (From docs/,
    # one level up is still inside the repository: there the path names nothing.)
    up = "." + "./"
    trap = "trap " + "T5"
    notes = "research" + "/switching.md"
    shared = up + up + "shared/" + notes
    root = write_tree(tmp_path / "repo", {
        "src/_switch.c": "/* found the hard way (%s) */\n#include \"%ssrc/x.h\"\n" % (trap, up),
        "src/interp_state.h": " * see %s\n" % shared,
        "docs/design.md": "Fine: [the C tests](%stests/c/t.c).\nSee %sshared/x.md\n" % (up, up),
        "tests/c/t.c": "#include \"%s%ssrc/stack_switch.h\"\n" % (up, up),
        "src/x.h": "", "src/stack_switch.h": "",
        "README.md": "Background in %s.\n" % notes,
        "bench/results/x.bin": trap + "\n",
    })
    assert references_outside(root) == [
        "src/_switch.c:1: a numbered trap from notes outside the repository: "
        "/* found the hard way (%s) */" % trap,
        "src/interp_state.h:1: a path into research notes outside the repository: * see " + shared,
        "src/interp_state.h:1: a path into a shared directory beside the repository: * see "
        + shared,
        "src/interp_state.h:1: %s leaves the repository: * see %s" % (shared, shared),
        "docs/design.md:2: a path into a shared directory beside the repository: See %sshared/x.md"
        % up,
        "docs/design.md:2: %sshared/x.md names nothing in the repository: See %sshared/x.md"
        % (up, up),
        "README.md:1: a path into research notes outside the repository: Background in %s." % notes,
    ]


# ------------------------------------------------------------------------------------------------
# The after-each-test check of tests/conftest.py finds each kind of leftover

LEAKING_TESTS = """\
    import loop
    import loop.socket
    import conftest

    KEEP = []

    def test_clean():
        loop.spawn(loop.sleep, 0.01).join()

    def test_leaves_a_sleeper():
        loop.spawn(loop.sleep, 60)
        loop.sleep(0)

    def test_leaves_an_fd_wait():
        a, b = loop.socket.socketpair()
        KEEP.append((a, b))
        loop.spawn(a.recv, 1)
        loop.sleep(0)

    def test_leaves_a_busy_green_thread():
        def spin():
            while True:
                loop.sleep(0)
        loop.spawn(spin)
        loop.sleep(0)

    def test_next_test_starts_from_an_empty_hub():
        state = conftest._hub_state(loop.get_hub())
        assert not any(state.values()), state
"""


def test_leak_check_names_what_each_test_left_behind(tmp_path):
    for helper in ("conftest.py", "backend_passes.py"):
        shutil.copy(ROOT / "tests" / helper, tmp_path / helper)
    write_tree(tmp_path, {"test_leaks.py": LEAKING_TESTS})
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rE",
         "--rootdir", str(tmp_path), str(tmp_path / "test_leaks.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    # each teardown error is "___ ERROR at teardown of NAME ___" and then the fixture's message
    reports = dict(re.findall(r"ERROR at teardown of (\w+) _+\n(.*)", proc.stdout))
    assert sorted(reports) == ["test_leaves_a_busy_green_thread", "test_leaves_a_sleeper",
                               "test_leaves_an_fd_wait"], proc.stdout + proc.stderr
    assert "5 passed, 3 errors" in proc.stdout, proc.stdout

    def kinds(test):
        return [kind for kind in ("wakeup sources", "fd table", "ready queue")
                if "'%s'" % kind in reports[test]]
    assert kinds("test_leaves_a_sleeper") == ["wakeup sources"], reports
    assert kinds("test_leaves_an_fd_wait") == ["wakeup sources", "fd table"], reports
    assert kinds("test_leaves_a_busy_green_thread") == ["ready queue"], reports
    assert "spin" in reports["test_leaves_a_busy_green_thread"], reports
