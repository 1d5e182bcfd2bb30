"""Build the C extensions: the switching core, ``loop._switch``, and the HTTP request-head
scanner, ``loop._protocols._http_head`` (optional: the reader works without it).

Everything else in the project is plain Python and is described by pyproject.toml; only the
extensions need code, because setuptools still declares C extensions here.
"""
import os

from setuptools import Extension, setup

extra_compile_args = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                      "-Wno-missing-field-initializers", "-fno-strict-aliasing"]
extra_link_args = []
if os.environ.get("LOOP_DEBUG_BUILD"):
    extra_compile_args += ["-O0", "-g3"]

setup(
    ext_modules=[
        Extension(
            "loop._switch",
            sources=["src/_switch.c", "src/fiber_stack.c"],
            depends=[os.path.join("src", name) for name in os.listdir("src") if name.endswith(".h")],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        ),
        Extension(
            "loop._protocols._http_head",
            sources=["src/protocols/http_head.c"],
            extra_compile_args=extra_compile_args,
        ),
    ],
)
