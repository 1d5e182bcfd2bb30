"""TCP echo benchmark: loop's StreamServer against gevent's StreamServer, asyncio/uvloop
streams, uvloop's Protocol API and a C epoll server (the ceiling), side by side in one run.

Each server runs in its own process pinned to CPU 0 (``taskset``); the load generator, a small C
epoll client (``bench/echo_client.c``, compiled on the fly with ``cc``), runs pinned to CPU 1
with 100 connections doing 64-byte round trips.  The client is not the bottleneck: it does
several times the round trips of the fastest server here when pointed at a C server.

    python bench/echo.py [--seconds 10] [--connections 100] [--size 64] [--rounds 1]
        [--python PY] [--gevent-python PY] [--src DIR] [--only NAME]
        [--json bench/results/echo.json]

``--python`` runs loop/asyncio/uvloop servers (needs loop importable and uvloop),
``--gevent-python`` the gevent one (an environment with gevent installed), ``--src`` the loop
source tree the loop server imports (default: this checkout's ``src``; compare two trees by
running twice).

Besides round trips per second the table shows the server process's CPU time (user + system,
from ``/proc``) per round trip, which moves much less than throughput when other work shares
the machine.  ``--rounds N`` runs all servers N times, interleaved, and reports medians.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

from _procs import cpu_seconds, free_port, stop_process, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

SERVERS = {
    "loop StreamServer": ("python", r'''
import sys
from loop.server import StreamServer
def echo(sock, address):
    recv, sendall = sock.recv, sock.sendall
    while True:
        data = recv(65536)
        if not data:
            return
        sendall(data)
server = StreamServer(("127.0.0.1", int(sys.argv[1])), echo, backlog=1024)
server.serve_forever()
'''),
    "gevent StreamServer": ("gevent", r'''
import sys
from gevent.server import StreamServer
def echo(sock, address):
    recv, sendall = sock.recv, sock.sendall
    while True:
        data = recv(65536)
        if not data:
            return
        sendall(data)
StreamServer(("127.0.0.1", int(sys.argv[1])), echo, backlog=1024).serve_forever()
'''),
    "asyncio streams": ("python", r'''
import asyncio, sys
async def echo(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
asyncio.run(main())
'''),
    "uvloop streams": ("python", r'''
import asyncio, sys, uvloop
async def echo(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
uvloop.run(main())
'''),
    "uvloop Protocol": ("python", r'''
import asyncio, sys, uvloop
class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.write = transport.write
    def data_received(self, data):
        self.write(data)
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
uvloop.run(main())
'''),
    "C epoll server": ("native", None),
}


def build(workdir, name):
    binary = os.path.join(workdir, name)
    compiler = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([compiler, "-O2", "-o", binary, os.path.join(HERE, name + ".c")],
                   check=True)
    return binary


def run_one(name, interpreter, code, client, args, workdir):
    port = free_port()
    if code is None:
        argv = [interpreter, str(port)]
    else:
        script = os.path.join(workdir, "server.py")
        with open(script, "w") as f:
            f.write(code)
        argv = [interpreter, script, str(port)]
    env = dict(os.environ, PYTHONPATH=args.src)
    # The client resets its connections when a run ends; the servers' reports of that are noise.
    server = subprocess.Popen(["taskset", "-c", "0"] + argv, env=env,
                              stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        # Warm up, then measure.
        subprocess.run(["taskset", "-c", "1", client, "127.0.0.1", str(port),
                        str(args.connections), "1", str(args.size)], check=True,
                       capture_output=True)
        cpu_before = cpu_seconds(server.pid)
        out = subprocess.run(["taskset", "-c", "1", client, "127.0.0.1", str(port),
                              str(args.connections), str(args.seconds), str(args.size)],
                             check=True, capture_output=True, text=True).stdout
        cpu = cpu_seconds(server.pid) - cpu_before
        trips, seconds = out.split()
        rate = int(trips) / float(seconds)
        cpu_per_trip = cpu / int(trips) * 1e6
        print("%-22s %10.0f round trips/s %8.2f us server CPU per round trip"
              % (name, rate, cpu_per_trip), flush=True)
        return {"server": name, "round_trips_per_s": round(rate),
                "server_cpu_us_per_round_trip": round(cpu_per_trip, 2)}
    finally:
        stop_process(server, 5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--gevent-python", default=sys.executable)
    parser.add_argument("--src", default=SRC, help="loop source tree for the loop server")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every server this many times, interleaved; report medians")
    parser.add_argument("--only", action="append", help="run only these servers")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "echo.json"))
    args = parser.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as workdir:
        client = build(workdir, "echo_client")
        interpreters = {"python": args.python, "gevent": args.gevent_python,
                        "native": build(workdir, "echo_server")}
        for _ in range(args.rounds):
            for name, (kind, code) in SERVERS.items():
                if args.only and name not in args.only:
                    continue
                try:
                    runs.setdefault(name, []).append(
                        run_one(name, interpreters[kind], code, client, args, workdir))
                except Exception as exc:
                    print("%-22s failed: %s" % (name, exc), flush=True)
    results = []
    for name, rows in runs.items():
        result = {"server": name}
        for key in ("round_trips_per_s", "server_cpu_us_per_round_trip"):
            result[key] = statistics.median(row[key] for row in rows)
            if len(rows) > 1:
                result[key + "_runs"] = [row[key] for row in rows]
        results.append(result)
    if args.rounds > 1:
        print("medians of %d rounds:" % args.rounds)
        for result in results:
            print("%-22s %10.0f round trips/s %8.2f us server CPU per round trip"
                  % (result["server"], result["round_trips_per_s"],
                     result["server_cpu_us_per_round_trip"]))
    report = {
        "benchmark": "tcp echo, %d connections, %d-byte round trips, %gs, %d round(s)" % (
            args.connections, args.size, args.seconds, args.rounds),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "machine": platform.platform(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "results": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
