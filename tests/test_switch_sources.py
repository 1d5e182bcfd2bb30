"""Rules of the C core's layout that its headers state, checked on the sources.

- src/interp_state.h says that it and the state_31x.h it includes are the only files that name a
  PyThreadState field: every other C file reaches the thread state through its functions.
- src/stack_switch.h defines global assembly symbols, so exactly one C file may include it.
- Comments in the core refer only to what is in the repository (no notes kept elsewhere).
"""
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
STATE_HEADERS = {"interp_state.h", "state_311.h", "state_312.h", "state_313.h"}


def c_sources():
    """The C files of every extension: the core in src/, the protocol helpers below it."""
    return sorted(glob.glob(os.path.join(SRC, "**", "*.[ch]"), recursive=True))


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def thread_state_field_uses(code):
    """(line, text) of every `->field` on a PyThreadState pointer: variables, parameters and
    struct members declared `PyThreadState *name`, and the results of CPython's getters."""
    names = set(re.findall(r"\bPyThreadState\s*\*\s*(\w+)", code))
    getters = (r"(?:PyThreadState_Get|PyThreadState_GET|_PyThreadState_UncheckedGet|"
               r"PyThreadState_GetUnchecked)\(\)")
    declared = "|".join(re.escape(n) for n in sorted(names)) or "(?!)"
    pattern = re.compile(r"(?:(?<![\w.])(?:%s)|%s)\s*->\s*\w+" % (declared, getters))
    # A member access `x->tstate->field` goes through a member declared PyThreadState *tstate.
    member = re.compile(r"->\s*(?:%s)\s*->\s*\w+" % declared)
    hits = []
    for lineno, line in enumerate(code.splitlines(), 1):
        if pattern.search(line) or member.search(line):
            hits.append((lineno, line.strip()))
    return hits


def test_only_the_interpreter_state_headers_name_thread_state_fields():
    offenders = []
    for path in c_sources():
        name = os.path.basename(path)
        if name in STATE_HEADERS:
            continue
        with open(path) as f:
            code = strip_comments(f.read())
        offenders += ["%s:%d: %s" % (name, lineno, text)
                      for lineno, text in thread_state_field_uses(code)]
    assert offenders == [], ("PyThreadState fields named outside interp_state.h:\n" +
                             "\n".join(offenders))


def test_the_field_check_sees_a_field_access():
    # The check above must recognise the forms it is meant to catch.
    code = strip_comments(
        "static void f(PyThreadState *ts, FiberThread *ft) {\n"
        "    PyObject *a = ts->context;\n"
        "    PyObject *b = ft->tstate->context;\n"
        "    int c = PyThreadState_Get()->tracing;\n"
        "    /* tstate->context in a comment is fine */\n"
        "}\n"
        "struct FiberThread { PyThreadState *tstate; };\n")
    assert [lineno for lineno, _ in thread_state_field_uses(code)] == [2, 3, 4]


def test_the_state_headers_do_name_them():
    # If the version headers stopped naming fields, the rule above would check nothing.
    with open(os.path.join(SRC, "state_313.h")) as f:
        assert thread_state_field_uses(strip_comments(f.read()))


def test_stack_switch_h_is_included_once():
    includers = []
    for path in glob.glob(os.path.join(SRC, "*.c")) + glob.glob(os.path.join(SRC, "*.h")):
        with open(path) as f:
            if re.search(r'^\s*#\s*include\s+"stack_switch\.h"', f.read(), flags=re.M):
                includers.append(os.path.basename(path))
    assert includers == ["_switch.c"]


def test_every_c_file_is_built():
    import ast
    with open(os.path.join(ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    sources = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "sources":
            sources += ast.literal_eval(node.value)
    on_disk = sorted(os.path.relpath(p, ROOT)
                     for p in glob.glob(os.path.join(SRC, "**", "*.c"), recursive=True))
    assert sorted(sources) == on_disk


def test_comments_refer_only_to_the_repository():
    outside = re.compile(r"\btrap\s+T\d+|\bT\d{1,2}\b(?!\w)|shared/research|\.\./\.\./")
    offenders = []
    for path in c_sources():
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if outside.search(line):
                    offenders.append("%s:%d: %s" % (os.path.basename(path), lineno, line.strip()))
    assert offenders == []
