"""grpcio on green threads: ``loop.grpc.init()``, loop's ``grpc.experimental.gevent.init_gevent()``.

grpc's C core waits for its events in C, which blocks the hub: without this, blocking grpc calls
made from green threads run one at a time and freeze every other green thread while they wait.
After ``init()`` each of those waits runs in a real thread of a pool of its own, and only the
calling green thread waits::

    from loop import monkey; monkey.patch_all()
    import loop.grpc; loop.grpc.init()
    import grpc
    channel = grpc.insecure_channel("127.0.0.1:50051")   # channels and servers after init()

Unary, streaming and deadline-bound calls, and servers, then run concurrently in green threads.
``max_threads`` bounds how many grpc waits hold a thread at once (one per call in flight, one
per channel with streams in flight, one per server).  See :mod:`loop._grpc` for the design.
"""
from loop._grpc import DEFAULT_MAX_THREADS, init, is_initialized

__all__ = ["init", "is_initialized", "DEFAULT_MAX_THREADS"]
