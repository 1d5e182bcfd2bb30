"""Running a snippet of Python in a fresh interpreter that imports this checkout's loop.

Used by the tests whose scenario must not share the test process: a crash, a fork, a backend
chosen by ``LOOP_BACKEND``, signals, interpreter shutdown."""
import os
import subprocess
import sys
import textwrap

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, "src"))


def run_python(code, env=None, timeout=30, interpreter_args=()):
    """Run ``code`` (dedented) with ``python -c``; return the CompletedProcess (text output).

    ``env`` adds to (or overrides) this process's environment; the checkout's ``src`` is put
    first on PYTHONPATH."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, *interpreter_args, "-c", textwrap.dedent(code)],
                          env=full_env, capture_output=True, text=True, timeout=timeout)
