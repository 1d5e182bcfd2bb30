"""Cooperative file objects (gevent's ``gevent.fileobject``): ``FileObjectPosix`` waits on the
hub, ``FileObjectThread`` runs blocking calls in the hub's thread pool, ``FileObject`` is the
default (``FileObjectPosix``), ``FileObjectBlock`` simply blocks.  See
:mod:`loop._green.fileobject`."""
from loop._green.fileobject import (FileObject, FileObjectBase, FileObjectBlock, FileObjectPosix,
                              FileObjectThread)

__all__ = ["FileObject", "FileObjectBase", "FileObjectBlock", "FileObjectPosix",
           "FileObjectThread"]
