"""Chat fan-out benchmark: loop's chat server against the same server on gevent and asyncio.

    python bench/chat.py [--clients 1000] [--repeat 3] [--json bench/results/chat-3.11.json]

For each server (examples/chat_server.py on loop, bench/chat_gevent.py, bench/chat_asyncio.py
on uvloop), in one run: start it in a subprocess, connect ``--clients`` TCP clients to one room,
then

* **latency**: one client sends ``--latency-messages`` lines, one every ``--interval`` seconds,
  each stamped with ``time.monotonic_ns()`` (a system-wide clock on Linux, so comparable across
  processes); every client records when each arrives.  p50/p99 over all (message, client) pairs.
* **throughput**: one client sends ``--burst-messages`` lines at once; the time until every
  client has all of them gives fan-out messages per second (lines in) and deliveries per
  second (lines out).

The clients live in this process on asyncio+uvloop with raw protocols, and count newlines with
``bytes.count`` during the burst so that the load generator stays cheaper than any server.
The loop server runs with its per-client limits opened up (rate, burst, outbox) so that all three
do the same work: bounded outboxes large enough that nothing is dropped.  The three servers have
the same structure: the lines of one read are delivered to the room as one batch, and each
client's writer sends everything queued for it in one write.

Besides wall-clock numbers, each phase records the server process's CPU time (user + system,
from ``/proc``): on a shared machine, where other jobs stretch the wall clock unevenly, CPU per
message is the steadier measure of how much work each server does.

``--repeat N`` runs the servers N times in turn (loop, gevent, asyncio, loop, ...) and reports
the median of each number, so that a burst of load from something else on the machine hits all
of them alike; every run is kept in the JSON under ``runs``.
"""
import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

from _procs import cpu_seconds, stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_OUTBOX = ["--outbox", "10000", "--max-drops", "1000000000"]
SERVERS = {
    "loop": [os.path.join(ROOT, "examples", "chat_server.py"), "--port", "0", "--http-port", "0",
             "--rate", "1e9", "--burst", "1000000000", "--per-ip", "1000000", *_OUTBOX],
    "gevent": [os.path.join(HERE, "chat_gevent.py"), "--port", "0", *_OUTBOX],
    "asyncio+uvloop": [os.path.join(HERE, "chat_asyncio.py"), "--port", "0", *_OUTBOX],
}
_PORT = re.compile(r"(?:line protocol|listening) on ([\d.]+):(\d+)")


class Client(asyncio.Protocol):
    def __init__(self, bench):
        self.bench = bench
        self.transport = None
        self.buffer = b""
        self.welcomed = asyncio.get_running_loop().create_future()
        self.latencies = []
        self.mode = "latency"
        self.burst_lines = 0
        self.burst_done = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.mode == "burst":
            self.burst_lines += data.count(b"\n")
            if self.burst_lines >= self.bench.burst_expected and not self.burst_done.done():
                self.burst_done.set_result(time.monotonic())
            return
        now = time.monotonic_ns()
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if not self.welcomed.done() and b"welcome" in line:
                self.welcomed.set_result(None)
            marker = line.find(b"> L ")
            if marker >= 0:
                _, seq, stamp = line[marker + 2:].split()
                self.latencies.append(now - int(stamp))
                if int(seq) == self.bench.last_latency_seq:
                    self.bench.latency_finished()

    def start_burst(self, already):
        self.mode = "burst"
        self.burst_lines = already
        self.burst_done = asyncio.get_running_loop().create_future()


class Bench:
    def __init__(self, args):
        self.args = args
        self.last_latency_seq = args.latency_messages - 1
        self.burst_expected = args.burst_messages
        self._latency_left = 0
        self._latency_all = None

    def latency_finished(self):
        self._latency_left -= 1
        if self._latency_left == 0:
            self._latency_all.set_result(None)

    async def run(self, address, pid=None):
        loop = asyncio.get_running_loop()
        args = self.args
        clients = []
        for _ in range(args.clients):
            _, client = await loop.create_connection(lambda: Client(self), *address)
            clients.append(client)
        await asyncio.wait_for(asyncio.gather(*(c.welcomed for c in clients)), 60)
        await asyncio.sleep(1.0)        # let join notices settle
        sender = clients[0]

        # Latency: paced messages.
        self._latency_left = len(clients)
        self._latency_all = loop.create_future()
        for client in clients:
            client.latencies.clear()
        cpu_before = cpu_seconds(pid)
        for seq in range(args.latency_messages):
            sender.transport.write(f"L {seq} {time.monotonic_ns()}\n".encode())
            await asyncio.sleep(args.interval)
        await asyncio.wait_for(self._latency_all, 120)
        latency_cpu = cpu_seconds(pid) - cpu_before
        latencies = sorted(ns for c in clients for ns in c.latencies)

        # Throughput: a burst.
        await asyncio.sleep(0.5)
        for client in clients:
            client.start_burst(0)
        payload = b"".join(f"T {seq} {'x' * 40}\n".encode()
                           for seq in range(args.burst_messages))
        cpu_before = cpu_seconds(pid)
        started = time.monotonic()
        sender.transport.write(payload)
        finished = await asyncio.wait_for(asyncio.gather(*(c.burst_done for c in clients)), 300)
        burst_cpu = cpu_seconds(pid) - cpu_before
        elapsed = max(finished) - started
        for client in clients:
            client.transport.close()
        deliveries = args.burst_messages * len(clients)
        return {
            "clients": len(clients),
            "latency_samples": len(latencies),
            "latency_p50_ms": _percentile(latencies, 50) / 1e6,
            "latency_p99_ms": _percentile(latencies, 99) / 1e6,
            "latency_mean_ms": statistics.fmean(latencies) / 1e6,
            "burst_messages": args.burst_messages,
            "burst_seconds": elapsed,
            "messages_per_second": args.burst_messages / elapsed,
            "deliveries_per_second": deliveries / elapsed,
            "latency_server_cpu_ms_per_message": latency_cpu / args.latency_messages * 1e3,
            "burst_server_cpu_seconds": burst_cpu,
            "burst_server_cpu_ns_per_delivery": burst_cpu / deliveries * 1e9,
        }


def _percentile(sorted_values, percent):
    index = min(len(sorted_values) - 1, int(round(percent / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def start_server(argv):
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = _PORT.search(line)
    if not match:
        proc.kill()
        raise RuntimeError(f"{argv[0]} did not start: {line!r}")
    return proc, (match.group(1), int(match.group(2)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--latency-messages", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--burst-messages", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every server this many times, in turn; report the median")
    parser.add_argument("--only", action="append", choices=sorted(SERVERS))
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.clients + 100)), hard))

    names = [name for name in SERVERS if not args.only or name in args.only]
    runs = {name: [] for name in names}
    for round_ in range(args.repeat):
        for name in names:
            result = run_one(args, SERVERS[name])
            runs[name].append(result)
            label = name if args.repeat == 1 else f"{name} #{round_ + 1}"
            print(f"{label:>21}: {_describe(result)}", flush=True)
    results = {name: _median_run(runs[name]) for name in names}
    if args.repeat > 1:
        for name in names:
            print(f"{name + ' median':>21}: {_describe(results[name])}", flush=True)

    report = {
        "benchmark": "chat fan-out",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("json", "only")},
        "results": results,
    }
    if args.repeat > 1:
        report["runs"] = runs
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")


def run_one(args, argv):
    proc, address = start_server(argv)
    try:
        return asyncio.run(Bench(args).run(address, proc.pid))
    except Exception as exc:    # a missing dependency (gevent) should not hide the others
        return {"error": repr(exc)}
    finally:
        stop_process(proc, 15)


def _median_run(results):
    """Each number's median over the runs that worked (the phases of a run are measured one
    after the other, so its numbers need not come from the same run)."""
    good = [r for r in results if "error" not in r]
    if not good:
        return results[-1]
    return {key: statistics.median(r[key] for r in good) for key in good[0]}


def _describe(result):
    if "error" in result:
        return "failed: " + result["error"]
    return (f"latency p50 {result['latency_p50_ms']:.1f} ms, p99 {result['latency_p99_ms']:.1f} "
            f"ms, server CPU {result['latency_server_cpu_ms_per_message']:.1f} ms/msg; burst "
            f"{result['deliveries_per_second'] / 1e6:.2f}M deliveries/s, server CPU "
            f"{result['burst_server_cpu_ns_per_delivery']:.0f} ns/delivery")


if __name__ == "__main__":
    main()
