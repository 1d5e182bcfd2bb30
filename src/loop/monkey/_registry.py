"""Bookkeeping for loop.monkey: what was replaced, the originals, and stale references.

Every replacement goes through :func:`patch_item` / :func:`remove_item`, which remember the
original the first time a name is touched.  A second patch of the same name keeps the first
original, so ``get_original`` always answers with the real stdlib object and ``patch_all()``
twice is harmless.
"""
import importlib
import sys
import warnings

__all__ = ["patch_item", "remove_item", "get_original", "is_module_patched",
           "is_object_patched", "saved", "warn_stale_references", "MonkeyPatchWarning"]

_MISSING = object()

#: module name -> {attribute name: original value or _MISSING}
saved = {}


class MonkeyPatchWarning(RuntimeWarning):
    """Something was imported too early for loop.monkey to make it cooperative."""


def patch_item(module, name, value):
    originals = saved.setdefault(module.__name__, {})
    if name not in originals:
        originals[name] = getattr(module, name, _MISSING)
    setattr(module, name, value)


def remove_item(module, name):
    originals = saved.setdefault(module.__name__, {})
    if name not in originals:
        originals[name] = getattr(module, name, _MISSING)
    if hasattr(module, name):
        delattr(module, name)


def _original(module_name, name):
    originals = saved.get(module_name, {})
    if name in originals:
        value = originals[name]
        if value is _MISSING:
            raise AttributeError(name)
        return value
    return getattr(importlib.import_module(module_name), name)


def get_original(module_name, item_name):
    """The unpatched ``module_name.item_name`` (a list of values for a list of names)."""
    if isinstance(item_name, str):
        return _original(module_name, item_name)
    return [_original(module_name, name) for name in item_name]


def is_module_patched(module_name):
    """True if loop.monkey replaced anything in ``module_name``."""
    return bool(saved.get(module_name))


def is_object_patched(module_name, item_name):
    return item_name in saved.get(module_name, {})


# Modules that are allowed to hold the originals: loop itself (the hub must stay real), the
# asyncio machinery the hub runs on, and the patched stdlib modules (their private aliases are
# either patched explicitly or harmless).
_KEEP_ORIGINALS = ("loop", "asyncio", "uvloop", "concurrent", "_pytest", "pytest", "pluggy",
                   "socket", "ssl", "select", "selectors", "threading", "_thread", "time",
                   "queue", "subprocess", "os", "signal", "_threading_local", "importlib",
                   "multiprocessing", "test", "gevent", "greenlet", "unittest", "typing",
                   "logging", "_socket", "_ssl", "posix", "dummy_threading", "encodings")

#: (module, name) copies of an original that are never called after the module's import, so
#: they cannot block a green thread.  ``tempfile`` makes its one lock with ``_allocate_lock``
#: at import, and ``patch_all`` itself imports it (``importlib.metadata``, for the plugins).
_HARMLESS_COPIES = {("tempfile", "_allocate_lock")}


def warn_stale_references(replaced):
    """Warn about modules that copied a now-replaced original (``from time import sleep``
    before the patch): calls through that copy still block the hub.

    ``replaced`` maps id(original) -> "module.name" for the originals of this patch.
    """
    stale = []
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name.split(".")[0] in _KEEP_ORIGINALS:
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            try:
                key = id(value)
            except Exception:
                continue
            if key in replaced and not attr.startswith("__") and \
                    (module_name, attr) not in _HARMLESS_COPIES:
                stale.append("%s.%s (the original %s)" % (module_name, attr, replaced[key]))
    if stale:
        warnings.warn(
            "loop.monkey: these names were bound before patching and still refer to the "
            "blocking originals; calls through them block every green thread: %s.  Patch "
            "earlier (first lines of the program, or 'python -m loop.monkey script.py')."
            % ", ".join(sorted(stale)), MonkeyPatchWarning, stacklevel=3)
    return stale
