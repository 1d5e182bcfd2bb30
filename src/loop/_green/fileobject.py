"""File objects whose blocking calls block only the calling green thread.

Two ways to get there, as in gevent, because no single one works for every kind of file:

* :class:`FileObjectPosix` waits on the hub.  The raw layer is the green pipe end of
  :mod:`loop._green.pipe` (poll with a zero timeout, wait on the hub if not ready, then move
  only what cannot block), under the stdlib's own buffering and text layers.  It suits pipes,
  ttys and sockets; a regular file always polls ready, so its reads and writes still block
  (briefly) -- use the thread variant for disk files that may be slow.
* :class:`FileObjectThread` runs each blocking call of an ordinary file object in the hub's
  pool of real threads and waits for the result; a green lock keeps two green threads from
  using the object at once.  It works for any file object, at the cost of a thread hand-off per
  call.

Both are thin wrappers: every attribute they do not define comes from the wrapped ``io``
object (``.io``), so they can be passed where a file is expected.
"""
import io as _io
import os as _os

from loop._core.hub import get_hub
from loop._green.pipe import BufferedReader, BufferedWriter, GreenPipe
from loop.lock import Semaphore

__all__ = ["FileObjectBase", "FileObjectBlock", "FileObjectPosix", "FileObjectThread",
           "FileObject"]


def _split_mode(mode):
    if not isinstance(mode, str):
        raise TypeError("mode must be a string, not %r" % (mode,))
    mode = mode.replace("U", "")
    if len(set(mode)) != len(mode) or set(mode) - set("rwabt+x"):
        raise ValueError("invalid mode: %r" % (mode,))
    return mode


class FileObjectBase:
    """Delegates to the wrapped ``io`` object; subclasses decide how blocking calls wait."""

    def __init__(self, io_object, closefd):
        self._io = io_object
        self._close = closefd

    @property
    def io(self):
        """The wrapped ``io`` object."""
        return self._io

    @property
    def closed(self):
        return self._io is None or self._io.closed

    def close(self):
        """Flush and close; the descriptor is closed too unless ``close=False`` was given."""
        io_object, self._io = self._io, None
        if io_object is not None:
            self._do_close(io_object, self._close)

    def _do_close(self, io_object, closefd):
        io_object.close()

    def __getattr__(self, name):
        io_object = self.__dict__.get("_io")
        if io_object is None:
            raise ValueError("I/O operation on closed file") if name in (
                "read", "write", "readline", "readlines", "flush", "fileno") else \
                AttributeError(name)
        return getattr(io_object, name)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<%s %s%r>" % (type(self).__name__, "closed " if self.closed else "",
                              self._io)


class FileObjectBlock(FileObjectBase):
    """A plain file object behind the same interface: its calls block the whole OS thread.
    For files that never block long (and for code that picks the kind by configuration)."""

    def __init__(self, fobj, mode="rb", bufsize=-1, close=True, encoding=None, errors=None,
                 newline=None):
        if isinstance(fobj, (int, str, bytes, _os.PathLike)):
            mode = _split_mode(mode)
            kwargs = {} if "b" in mode else dict(encoding=encoding, errors=errors,
                                                 newline=newline)
            fobj = _io.open(fobj, mode, bufsize,
                            closefd=close if isinstance(fobj, int) else True, **kwargs)
        super().__init__(fobj, close)


class FileObjectPosix(FileObjectBase):
    """A file object on a descriptor (or an object with ``fileno()``) whose reads and writes
    wait on the hub; see the module docstring for what it suits."""

    def __init__(self, fobj, mode="rb", bufsize=-1, close=True, encoding=None, errors=None,
                 newline=None):
        mode = _split_mode(mode)
        if isinstance(fobj, int):
            fd = fobj
        elif hasattr(fobj, "fileno"):
            fd = fobj.fileno()
        else:
            raise TypeError("FileObjectPosix needs a file descriptor or an object with "
                            "fileno(), not %r" % (fobj,))
        if "+" in mode or ("r" in mode) == ("w" in mode or "a" in mode or "x" in mode):
            raise ValueError("FileObjectPosix is either for reading or for writing: %r"
                             % (mode,))
        self.fileio = raw = GreenPipe(fd, "r" if "r" in mode else "w", closefd=close)
        if bufsize == 0:
            if "b" not in mode:
                raise ValueError("can't have unbuffered text I/O")
            io_object = raw
        else:
            size = _io.DEFAULT_BUFFER_SIZE if bufsize in (-1, 1) else bufsize
            buffered_class = BufferedReader if "r" in mode else BufferedWriter
            io_object = buffered_class(raw, size)
            if "b" not in mode:
                io_object = _io.TextIOWrapper(io_object, encoding, errors, newline,
                                              line_buffering=(bufsize == 1))
        self._fobj = fobj  # keeps a wrapped file object (and so its descriptor) alive
        super().__init__(io_object, close)


class FileObjectThread(FileObjectBase):
    """Any file object (or a descriptor or path, opened with ``mode``) whose blocking calls
    run in the hub's thread pool; see the module docstring."""

    _BLOCKING = ("read", "readinto", "readline", "readlines", "write", "writelines", "flush",
                 "seek", "tell", "truncate", "read1", "readinto1", "peek")

    def __init__(self, fobj, mode="rb", bufsize=-1, close=True, threadpool=None, lock=True,
                 encoding=None, errors=None, newline=None):
        self.threadpool = threadpool if threadpool is not None else get_hub().threadpool
        if lock is True:
            lock = Semaphore(1)
        elif lock is False:
            lock = None
        self.lock = lock
        if isinstance(fobj, (int, str, bytes, _os.PathLike)):
            mode = _split_mode(mode)
            kwargs = {} if "b" in mode else dict(encoding=encoding, errors=errors,
                                                 newline=newline)
            fobj = self._call(_io.open, fobj, mode, bufsize,
                              closefd=close if isinstance(fobj, int) else True, **kwargs)
        super().__init__(fobj, close)

    def _call(self, function, *args, **kwargs):
        lock = self.lock
        if lock is None:
            return self.threadpool.apply(function, args, kwargs)
        with lock:
            return self.threadpool.apply(function, args, kwargs)

    def _do_close(self, io_object, closefd):
        if closefd:
            self._call(io_object.close)
        else:
            self._call(io_object.flush)

    def __getattr__(self, name):
        attribute = super().__getattr__(name)
        if name in self._BLOCKING:
            def in_thread(*args, **kwargs):
                return self._call(attribute, *args, **kwargs)
            in_thread.__name__ = name
            return in_thread
        return attribute


#: The default kind: waits on the hub (FileObjectPosix), as gevent's default on POSIX.
FileObject = FileObjectPosix

# Shown (repr, pickling by reference) under the public module that re-exports them.
for _public in (FileObjectBase, FileObjectBlock, FileObjectPosix, FileObjectThread):
    _public.__module__ = "loop.fileobject"
del _public
