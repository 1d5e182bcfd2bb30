"""Sans-IO protocol readers below the servers: bytes in, events or results out, no socket, clock
or hub.  :mod:`~loop._protocols.http` reads HTTP/1.1 requests, :mod:`~loop._protocols.proxy` the
PROXY protocol header; both import without the C extension."""
