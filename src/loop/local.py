"""``local``: attributes that have a separate value in each green thread.

The ``threading.local`` interface (including subclasses with ``__init__`` arguments, which run
again in each green thread that first touches the object), keyed by the current fiber instead of
the OS thread.  Each green thread's attributes live in a plain dict; on every attribute access
the object's ``__dict__`` is pointed at the current green thread's dict, as the pure-Python
``_threading_local`` does per thread.  A green thread's dict is dropped when the green thread is
garbage collected (a weak reference to the fiber triggers it).  A real (unpatched) lock guards the
swap, because green threads of several OS threads may share one ``local``.
"""
from weakref import ref

from loop._core.originals import RLock as _RLock
from loop._switch import getcurrent

# The real RLock (bound by the core before any patch): the lock must exclude green threads of
# other OS threads, which a green lock (owned by one hub) cannot do.

__all__ = ["local"]


class _LocalImpl:
    __slots__ = ("dicts", "localargs", "lock", "__weakref__")

    def __init__(self, args, kwargs):
        self.dicts = {}  # id(fiber) -> (weakref to fiber, attribute dict)
        self.localargs = (args, kwargs)
        self.lock = _RLock()

    def get_dict(self):
        fiber = getcurrent()
        entry = self.dicts.get(id(fiber))
        if entry is not None and entry[0]() is fiber:
            return entry[1], False
        return self.create_dict(fiber), True

    def create_dict(self, fiber):
        attributes = {}
        key = id(fiber)
        impl_ref = ref(self)

        def forget(_, key=key):
            impl = impl_ref()
            if impl is not None:
                impl.dicts.pop(key, None)

        self.dicts[key] = (ref(fiber, forget), attributes)
        return attributes


def _swap_in(self):
    impl = object.__getattribute__(self, "_local__impl")
    attributes, created = impl.get_dict()
    object.__setattr__(self, "__dict__", attributes)
    if created:
        cls = type(self)
        if cls.__init__ is not object.__init__:
            args, kwargs = impl.localargs
            cls.__init__(self, *args, **kwargs)
    return impl


def _mangle(klass, name):
    if name.startswith("__") and not name.endswith("__"):
        return "_%s%s" % (klass.__name__.lstrip("_"), name)
    return name


class local:
    """Green-thread-local attributes."""
    __slots__ = ("_local__impl", "__dict__")

    def __new__(cls, *args, **kwargs):
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        impl = _LocalImpl(args, kwargs)
        object.__setattr__(self, "_local__impl", impl)
        # The creating green thread's dict exists now; __init__ runs for it the usual way.
        object.__setattr__(self, "__dict__", impl.create_dict(getcurrent()))
        return self

    def __copy__(self):
        """A new local of the same class whose current green thread starts with a shallow
        copy of this green thread's attributes (other green threads start empty)."""
        impl = object.__getattribute__(self, "_local__impl")
        cls = type(self)
        with impl.lock:
            _swap_in(self)
            attributes = dict(object.__getattribute__(self, "__dict__"))
        duplicate = object.__new__(cls)
        duplicate_impl = _LocalImpl(*impl.localargs)
        object.__setattr__(duplicate, "_local__impl", duplicate_impl)
        own = duplicate_impl.create_dict(getcurrent())
        own.update(attributes)
        object.__setattr__(duplicate, "__dict__", own)
        # Attributes a subclass keeps in __slots__ live on the object itself (shared by all
        # green threads); a copy has them too.
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if name in ("__dict__", "__weakref__", "_local__impl"):
                    continue
                name = _mangle(klass, name)
                try:
                    value = object.__getattribute__(self, name)
                except AttributeError:
                    continue
                object.__setattr__(duplicate, name, value)
        return duplicate

    def __getattribute__(self, name):
        impl = object.__getattribute__(self, "_local__impl")
        with impl.lock:
            _swap_in(self)
            return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if name == "__dict__":
            raise AttributeError("%r object attribute '__dict__' is read-only"
                                 % type(self).__name__)
        impl = object.__getattribute__(self, "_local__impl")
        with impl.lock:
            _swap_in(self)
            return object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if name == "__dict__":
            raise AttributeError("%r object attribute '__dict__' is read-only"
                                 % type(self).__name__)
        impl = object.__getattribute__(self, "_local__impl")
        with impl.lock:
            _swap_in(self)
            return object.__delattr__(self, name)
