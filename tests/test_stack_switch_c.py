"""The assembly switch on its own, outside Python: natively, and for aarch64 under qemu when a
cross compiler (gcc-aarch64-linux-gnu) and qemu-user are installed."""
import glob
import os
import shutil
import subprocess
import sysconfig

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "c", "stack_switch_test.c")
ROOT = os.path.dirname(HERE)


def build_and_run(cc, runner, tmp_path, opt):
    exe = tmp_path / f"switch-{os.path.basename(cc)}{opt}"
    subprocess.run([cc, opt, "-std=c11", "-Wall", "-o", str(exe), SOURCE, "-lm"], check=True,
                   capture_output=True, text=True, timeout=120)
    proc = subprocess.run(runner + [str(exe)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("opt", ["-O0", "-O3"])
def test_native_switch(tmp_path, opt):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    assert build_and_run(cc, [], tmp_path, opt).startswith("ok ")


@pytest.mark.parametrize("opt", ["-O0", "-O3"])
def test_aarch64_switch_under_qemu(tmp_path, opt):
    cc = shutil.which("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64")
    if not (cc and qemu):
        pytest.skip("gcc-aarch64-linux-gnu and qemu-user are not installed")
    out = build_and_run(cc, [qemu, "-L", "/usr/aarch64-linux-gnu"], tmp_path, opt)
    assert out.startswith("ok aarch64")


def test_extension_compiles_for_aarch64(tmp_path):
    """The whole C core cross-compiles (x86-64 and aarch64 Linux share the LP64 layout the
    Python headers describe)."""
    cc = shutil.which("aarch64-linux-gnu-gcc")
    if not cc:
        pytest.skip("gcc-aarch64-linux-gnu is not installed")
    include = sysconfig.get_paths()["include"]
    sources = sorted(glob.glob(os.path.join(ROOT, "src", "*.c")))
    assert len(sources) >= 2, sources
    objects = []
    for source in sources:
        obj = str(tmp_path / (os.path.basename(source) + ".o"))
        proc = subprocess.run([cc, "-std=c11", "-O2", "-fPIC", "-Wall", "-c", "-I", include,
                               "-o", obj, source], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        objects.append(obj)
    proc = subprocess.run([cc, "-shared", "-o", str(tmp_path / "_switch.so")] + objects,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
