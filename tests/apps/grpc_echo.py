"""A grpc service without generated code: bytes in, bytes out, each method sleeps on request.

``Echo/Unary``   b"<delay>:<payload>"  -> b"echo:<payload>" after <delay> seconds
``Echo/Stream``  b"<delay>:<count>"    -> b"0", b"1", ... one every <delay> seconds
``Echo/Collect`` stream of b"<n>"      -> b"<sum of n>" (client streaming)
``Echo/Chat``    stream of b"<delay>:<x>" -> b"re:<x>" for each, after <delay> seconds

Run as a script it serves on 127.0.0.1 (unpatched, real threads) and prints its port.
"""
import sys
import time
from concurrent import futures

import grpc

SERVICE = "test.Echo"


def _unary(request, context):
    delay, _, payload = request.partition(b":")
    time.sleep(float(delay))
    return b"echo:" + payload


def _stream(request, context):
    delay, _, count = request.partition(b":")
    for i in range(int(count)):
        time.sleep(float(delay))
        yield b"%d" % i


def _collect(request_iterator, context):
    return b"%d" % sum(int(item) for item in request_iterator)


def _chat(request_iterator, context):
    for item in request_iterator:
        delay, _, payload = item.partition(b":")
        time.sleep(float(delay))
        yield b"re:" + payload


def handler():
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
        "Collect": grpc.stream_unary_rpc_method_handler(_collect),
        "Chat": grpc.stream_stream_rpc_method_handler(_chat),
    })


def make_server(max_workers=200):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         handlers=[handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    return server, port


def methods(channel):
    """The four calls on ``channel`` (no serializers: requests and responses are bytes)."""
    return (channel.unary_unary("/%s/Unary" % SERVICE),
            channel.unary_stream("/%s/Stream" % SERVICE),
            channel.stream_unary("/%s/Collect" % SERVICE),
            channel.stream_stream("/%s/Chat" % SERVICE))


if __name__ == "__main__":
    server, port = make_server()
    server.start()
    print(port, flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
    server.stop(0)
