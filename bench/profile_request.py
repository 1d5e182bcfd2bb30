"""Where a request's time goes: instruction counts per request on the server hot path.

Wall-clock throughput moves with whatever else the machine runs; the number of instructions a
server executes per request does not.  So this runs a server under a profiler, drives a fixed
number of keep-alive requests at it from a client in another process, and repeats with a larger
number: the difference between the two runs divided by the difference in requests is the cost of
one request, with start-up, imports, connection set-up and shutdown cancelled out.

Servers (each a hello world answering the same request):

* ``loop``: ``loop.pywsgi.WSGIServer`` after ``loop.monkey.patch_all()``;
* ``echo``: ``loop.server.StreamServer`` with ``recv``/``sendall``, 64-byte round trips;
* ``uvicorn``: uvicorn's ASGI hello world on httptools and uvloop, one worker.

Tools:

* ``callgrind``: instructions per request, every C function's self and inclusive cost, and the
  self cost grouped by the shared object it lives in (the HTTP parser, uvloop, the switching
  core, the interpreter, libc);
* ``strace``: system calls per request (``strace -c -f``);
* ``perf``: at full speed, system calls and context switches per request from the kernel's
  tracepoints (``perf stat``), and the server's user and system CPU time from /proc (which,
  unlike the counts, moves with machine load);
* ``pyspy``: where the interpreter's time goes at the Python level, as the share of CPU samples
  whose innermost frame of interest is in each layer (pywsgi, the green socket, the hub, ...).
  A share of samples is not an instruction count, but under an even load it is the same share.

Run ``python bench/profile_request.py --help``; ``--json FILE`` keeps the numbers.  One profiler
runs at a time; each run is bounded by ``--timeout``.
"""
import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from _procs import free_port, wait_port

PERF_EVENTS = ["raw_syscalls:sys_enter", "context-switches", "task-clock", "page-faults"] + [
    "syscalls:sys_enter_" + name for name in (
        "read", "write", "recvfrom", "sendto", "epoll_wait", "epoll_pwait", "epoll_ctl",
        "writev", "sendmsg", "recvmsg", "futex")]


def process_times(pid):
    """(parent pid, user seconds, system seconds) of ``pid`` from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), int(fields[11]) / ticks, int(fields[12]) / ticks

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

PIDFILE_PRELUDE = '''
import os
_pidfile = os.environ.get("PROFILE_PIDFILE")
if _pidfile:
    with open(_pidfile, "w") as _f:
        _f.write(str(os.getpid()))
'''

SERVERS = {
    "loop": ("http", PIDFILE_PRELUDE + '''
from loop import monkey; monkey.patch_all()
import sys
from loop.pywsgi import WSGIServer
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]
WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=False, backlog=4096).serve_forever()
'''),
    "echo": ("echo", PIDFILE_PRELUDE + '''
import sys
from loop.server import StreamServer
def echo(sock, address):
    recv, sendall = sock.recv, sock.sendall
    while True:
        data = recv(65536)
        if not data:
            return
        sendall(data)
StreamServer(("127.0.0.1", int(sys.argv[1])), echo, backlog=1024).serve_forever()
'''),
    "uvicorn": ("http", PIDFILE_PRELUDE + '''
import sys
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            access_log=False, log_level="warning", backlog=4096, workers=1)
'''),
}

# The load: ``conns`` keep-alive connections, one request outstanding on each, until ``total``
# responses have come back.  Plain selectors so that it runs on any Python without loop.
CLIENT = r'''
import selectors, socket, sys
port, mode, conns, total = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: profile\r\n\r\n"
MESSAGE = b"x" * 64
payload = REQUEST if mode == "http" else MESSAGE
sel = selectors.DefaultSelector()
socks = []
for _ in range(min(conns, total)):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    socks.append(s)
    sel.register(s, selectors.EVENT_READ, bytearray())
sent = done = 0
for s in socks:
    s.sendall(payload); sent += 1

def complete(buf):
    """How many whole answers ``buf`` holds; drop them from it."""
    n = 0
    if mode == "echo":
        n, rest = divmod(len(buf), len(MESSAGE))
        del buf[:n * len(MESSAGE)]
        return n
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return n
        head = bytes(buf[:end]).lower()
        length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        if len(buf) < end + 4 + length:
            return n
        del buf[:end + 4 + length]
        n += 1

while done < total:
    for key, _ in sel.select(60):
        s, buf = key.fileobj, key.data
        data = s.recv(65536)
        if not data:
            raise SystemExit("server closed a connection")
        buf += data
        for _ in range(complete(buf)):
            done += 1
            if sent < total:
                s.sendall(payload); sent += 1
    else:
        if not sel.get_map():
            break
for s in socks:
    s.close()
print(done)
'''

# Which layer a shared object belongs to (callgrind) ...
OBJECT_LAYERS = [
    (re.compile(r"httptools/"), "HTTP parser (httptools C)"),
    (re.compile(r"uvloop"), "uvloop C (libuv and its Cython)"),
    (re.compile(r"_switch"), "switch (loop._switch)"),
    (re.compile(r"libc[.-]|libc\.so|libpthread|ld-linux"), "libc (memcpy, malloc, syscall stubs)"),
    (re.compile(r"python3|libpython"), "CPython interpreter"),
]
# ... and which layer a Python file belongs to (py-spy), most specific first.
FILE_LAYERS = [
    (re.compile(r"uvicorn/protocols"), "uvicorn protocol (parser callbacks, response)"),
    (re.compile(r"uvicorn/"), "uvicorn other"),
    (re.compile(r"httptools/parser"), "HTTP parser (httptools)"),
    (re.compile(r"loop/_protocols/"), "HTTP reader (loop._protocols)"),
    (re.compile(r"loop/pywsgi\.py"), "pywsgi: environ, response, connection loop"),
    (re.compile(r"loop/_green/|loop/socket\.py"), "green socket (recv/send, waits)"),
    (re.compile(r"loop/_core/nesting\.py|asyncio/runners\.py|uvloop/"),
     "event loop run (time inside uvloop's C)"),
    (re.compile(r"loop/_core/hub\.py|loop/hub\.py"), "hub (drain, fd callbacks)"),
    (re.compile(r"loop/_core/(greenlet|api|links|event|timeout)\.py"),
     "green threads (spawn, links, switch calls)"),
    (re.compile(r"loop/(server|baseserver)\.py"), "StreamServer / accept"),
    (re.compile(r"asyncio/"), "asyncio (tasks, futures)"),
    (re.compile(r"<string>"), "application"),
    (re.compile(r"loop/"), "loop other"),
]


def layer_of(table, name, default):
    for pattern, layer in table:
        if pattern.search(name):
            return layer
    return default


SIMULATE = []


def server_command(tool, python, script, port, out):
    base = [python, "-c", script, str(port)]
    if tool == "callgrind":
        return ["valgrind", "--tool=callgrind", "--dump-instr=no", "--callgrind-out-file=" + out,
                "--quiet"] + SIMULATE + base
    if tool == "strace":
        return ["strace", "-c", "-f", "-o", out] + base
    return base


def one_run(args, name, tool, total, workdir):
    """Run server ``name`` under ``tool`` for ``total`` requests; return the profiler's file."""
    mode, script = SERVERS[name]
    port = free_port()
    out = os.path.join(workdir, "%s.%s.%d.out" % (name, tool, total))
    pidfile = os.path.join(workdir, "%s.%s.%d.pid" % (name, tool, total))
    env = dict(os.environ, PYTHONPATH=args.src, PROFILE_PIDFILE=pidfile)
    server = subprocess.Popen(server_command(tool, args.python, script, port, out), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, timeout=min(args.timeout, 120))
        with open(pidfile) as f:
            guest = int(f.read())
        sampler = None
        if tool == "pyspy":         # attached once started, so imports are not sampled
            sampler = subprocess.Popen(
                [shutil.which("py-spy") or os.path.join(os.path.dirname(args.python), "py-spy"),
                 "record", "--nonblocking", "--rate", "1000", "--format", "raw",
                 "--output", out, "--pid", str(guest)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2)
        elif tool == "perf":        # full speed: system calls from the kernel's tracepoints
            sampler = subprocess.Popen(
                ["perf", "stat", "-x", ",", "-o", out, "-p", str(guest), "-e",
                 ",".join(PERF_EVENTS)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            before = process_times(guest)[1:]
        started = time.monotonic()
        answered = subprocess.run(
            [sys.executable, "-c", CLIENT, str(port), mode, str(args.conns), str(total)],
            check=True, capture_output=True, text=True, timeout=args.timeout).stdout.strip()
        if int(answered) != total:
            raise RuntimeError("%s answered %s of %d" % (name, answered, total))
        seconds = time.monotonic() - started
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(60)
        if tool == "perf":
            after = process_times(guest)[1:]
            with open(out + ".cpu", "w") as f:
                json.dump({"user": after[0] - before[0], "system": after[1] - before[1]}, f)
        # SIGTERM: a default action under valgrind (which then writes its profile), a graceful
        # exit for uvicorn; the profilers report when their child is gone.
        os.kill(guest, signal.SIGTERM)
        server.wait(args.timeout)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    if not os.path.exists(out):
        raise RuntimeError("%s under %s wrote no profile:\n%s" % (name, tool,
                                                                 server.stderr.read().decode()))
    print("  %s %s n=%d: %.1f s" % (name, tool, total, seconds), file=sys.stderr)
    return out


def _named(table, value):
    """Resolve callgrind's name compression: ``(12) name`` defines id 12, ``(12)`` reuses it."""
    m = re.match(r"\((\d+)\)\s*(.*)", value)
    if not m:
        return value
    if m.group(2):
        table[m.group(1)] = m.group(2)
    return table.get(m.group(1), m.group(2))


def callgrind_functions(path):
    """(total, {function [object]: self instructions}, {function [object]: inclusive}) read
    straight from a callgrind profile.  Recursion levels (``name'2``) are merged.  Inclusive
    costs are only meaningful for functions that do not switch stacks: callgrind's call tracking
    cannot follow a C stack switch."""
    objects, functions = {}, {}
    self_cost, inclusive = collections.Counter(), collections.Counter()
    total, current, obj, call_next, names = {}, None, "", False, ["Ir"]
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            key, eq, value = line.partition("=")
            if eq and key in ("ob", "cob", "fn", "cfn", "cfi", "cfl", "fl", "fi", "fe", "calls"):
                if key == "ob":
                    obj = "/".join(_named(objects, value).split("/")[-3:])
                elif key == "cob":
                    _named(objects, value)
                elif key == "fn":
                    name = _named(functions, value).split("'")[0]
                    current = "%s [%s]" % (name, obj)
                elif key == "cfn":
                    _named(functions, value)
                elif key == "calls":
                    call_next = True
                continue
            if line.startswith("events:"):
                names = line.split()[1:]
                continue
            if line.startswith(("summary:", "totals:")):
                total = dict(zip(names, map(int, line.split()[1:])))
                continue
            if current is None or not (line[0].isdigit() or line[0] in "+-*"):
                continue
            cost = int(line.split()[1]) if len(line.split()) > 1 else 0
            if call_next:
                inclusive[current] += cost
                call_next = False
            else:
                self_cost[current] += cost
                inclusive[current] += cost
    return total, self_cost, inclusive


def strace_calls(path):
    """{syscall: calls} from ``strace -c`` output."""
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0].replace(".", "").isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    return calls


def pyspy_layers(path):
    """{layer: samples} and {python function: samples} from py-spy's collapsed stacks."""
    layers, functions = collections.Counter(), collections.Counter()
    inclusive = collections.Counter()
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit():
                continue
            frames = stack.split(";")
            count = int(count)
            layer = None
            for frame in reversed(frames):          # innermost first
                guess = layer_of(FILE_LAYERS, frame, None)
                if guess:
                    layer = guess
                    break
            if layer is None:
                layer = "interpreter / unattributed"
            layers[layer] += count
            for frame in reversed(frames):
                if ".py" in frame or "<string>" in frame:
                    functions[frame] += count
                    break
            # Inclusive: every function on the stack once, whatever line it was on.
            for function in {re.sub(r":\d+\)$", ")", frame) for frame in frames}:
                inclusive[function] += count
    return layers, functions, inclusive


def perf_counts(path):
    """{event: count} from ``perf stat -x ,`` output, plus the process's user/system seconds."""
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                counts[parts[2].replace("syscalls:sys_enter_", "")] = float(parts[0])
    with open(path + ".cpu") as f:
        for kind, seconds in json.load(f).items():
            counts["cpu_us_" + kind] = seconds * 1e6
    return counts


def difference(small, large, span):
    keys = set(small) | set(large)
    return {k: (large.get(k, 0) - small.get(k, 0)) / span for k in keys}


def profile(args, name, tool, workdir):
    n1, n2 = args.n1, args.n2
    if tool == "pyspy":             # samples, not counts: one long run is enough
        out = one_run(args, name, tool, n2, workdir)
        layers, functions, inclusive = pyspy_layers(out)
        return {"samples_by_layer": dict(layers), "samples_by_function": dict(functions),
                "samples_inclusive": dict(inclusive)}
    small = one_run(args, name, tool, n1, workdir)
    large = one_run(args, name, tool, n2, workdir)
    span = n2 - n1
    if tool == "perf":
        return {"per_request": difference(perf_counts(small), perf_counts(large), span)}
    if tool == "strace":
        per = difference(strace_calls(small), strace_calls(large), span)
        return {"syscalls_per_request": per, "total": sum(per.values())}
    total_small, self_small, incl_small = callgrind_functions(small)
    total_large, self_large, incl_large = callgrind_functions(large)
    self_per = difference(self_small, self_large, span)
    by_object = collections.Counter()
    for function, cost in self_per.items():
        obj = function.rpartition("[")[2]
        by_object[layer_of(OBJECT_LAYERS, obj, "other")] += cost
    events = difference(total_small, total_large, span)
    return {"instructions_per_request": events["Ir"], "events_per_request": events,
            "self_by_layer": dict(by_object), "self": self_per,
            "inclusive": difference(incl_small, incl_large, span)}


def show(name, tool, result, top):
    unit = "round trip" if name == "echo" else "request"
    if tool == "callgrind":
        total = result["instructions_per_request"]
        print("\n%s: %.0f instructions per %s" % (name, total, unit))
        if len(result["events_per_request"]) > 1:
            print("  " + "  ".join("%s %.0f" % kv for kv in result["events_per_request"].items()))
        for layer, cost in sorted(result["self_by_layer"].items(), key=lambda kv: -kv[1]):
            print("  %9.0f  %5.1f%%  %s" % (cost, 100 * cost / total, layer))
        for kind in ("self", "inclusive"):
            print("  top %d by %s cost:" % (top, kind))
            for fn, cost in sorted(result[kind].items(), key=lambda kv: -kv[1])[:top]:
                print("  %9.0f  %s" % (cost, fn))
    elif tool == "strace":
        print("\n%s: %.2f system calls per %s" % (name, result["total"], unit))
        for call, n in sorted(result["syscalls_per_request"].items(), key=lambda kv: -kv[1]):
            if n >= 0.01:
                print("  %6.2f  %s" % (n, call))
    elif tool == "perf":
        print("\n%s at full speed, per %s (kernel tracepoints; CPU time is load-dependent):"
              % (name, unit))
        for event, n in sorted(result["per_request"].items()):
            print("  %9.3f  %s" % (n, event))
    elif tool == "pyspy":
        samples = sum(result["samples_by_layer"].values()) or 1
        print("\n%s: share of %d CPU samples by innermost layer" % (name, samples))
        for layer, n in sorted(result["samples_by_layer"].items(), key=lambda kv: -kv[1]):
            print("  %5.1f%%  %s" % (100 * n / samples, layer))
        print("  top %d Python lines (innermost Python frame, self):" % top)
        for fn, n in sorted(result["samples_by_function"].items(), key=lambda kv: -kv[1])[:top]:
            print("  %5.1f%%  %s" % (100 * n / samples, fn))
        print("  top %d Python functions (inclusive):" % top)
        for fn, n in sorted(result["samples_inclusive"].items(), key=lambda kv: -kv[1])[:top]:
            print("  %5.1f%%  %s" % (100 * n / samples, fn))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="loop,echo,uvicorn")
    parser.add_argument("--tools", default="callgrind,strace,perf,pyspy")
    parser.add_argument("--n1", type=int, default=1000, help="requests in the short run")
    parser.add_argument("--n2", type=int, default=3000, help="requests in the long run")
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--src", default=SRC, help="the loop tree to import (PYTHONPATH)")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--keep", help="directory to keep the raw profiles in")
    parser.add_argument("--json", help="write all numbers to this file")
    parser.add_argument("--simulate", action="store_true",
                        help="callgrind also simulates caches and branch prediction (slower)")
    args = parser.parse_args()
    if args.simulate:
        SIMULATE.extend(["--cache-sim=yes", "--branch-sim=yes"])
    if args.n2 <= args.n1:
        parser.error("--n2 must be larger than --n1")
    workdir = args.keep or tempfile.mkdtemp(prefix="profile_request.")
    os.makedirs(workdir, exist_ok=True)
    results = {}
    try:
        for tool in args.tools.split(","):
            for name in args.servers.split(","):
                result = profile(args, name, tool, workdir)
                results.setdefault(name, {})[tool] = result
                show(name, tool, result, args.top)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": args.python, "n1": args.n1, "n2": args.n2,
                       "conns": args.conns, "results": results}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
