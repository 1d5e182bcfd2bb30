"""Hello-world WSGI benchmark, side by side in one run, measured with wrk.

Servers (each in its own process(es) pinned to CPU 0 with ``taskset``; ``wrk -t1`` pinned to
CPU 1), each measured with ``-c100`` and ``-c1000``:

* loop.pywsgi.WSGIServer
* gunicorn -w 1 -k loop.worker.GreenWorker (loop's WSGI server inside gunicorn's worker)
* gunicorn -w 1 -k loop.worker.GreenGunicornWorker (gunicorn's parser on loop's green threads)
* gevent.pywsgi.WSGIServer (default, Nagle on) and with TCP_NODELAY
* gunicorn -w 1 -k gevent
* uvicorn, one worker, an ASGI hello world on httptools and uvloop (what an asyncio user runs)
* granian, one worker, the same WSGI app behind its Rust HTTP front end
* nginx returning a fixed 200 (one worker), the ceiling
* with ``--h1c-path DIR`` (a directory holding the ``gunicorn_h1c`` package, gunicorn's optional
  C parser, e.g. from ``pip install --target DIR gunicorn-h1c``): GreenGunicornWorker and
  ``-k gevent`` again with it on the path

    python bench/wsgi.py [--duration 10] [--connections 100,1000] [--python PY]
        [--gevent-python PY] [--only NAME ...] [--rounds N | --slices N] [--h1c-path DIR]
        [--json bench/results/wsgi.json]

``--python`` must import loop (and gunicorn for the worker rows); ``--gevent-python`` must have
gevent and gunicorn.  On a shared machine, where load from other processes comes and goes,
``--rounds N`` repeats the whole sequence N times, and ``--slices N`` instead starts all the
servers at once and measures them in turns, N runs of ``--duration`` seconds each (order
reversed every other turn), so that neighbouring runs see the same outside load.  The summary
gives each row's median over the runs, its ratio to the median of ``gunicorn -k gevent``, and
the median of the paired ratios (each run against the baseline's run of the same turn).  Each
run also records the server's CPU time per request (the server process and its children, from
``/proc``), the measure least moved by outside load: its ratio says how many more requests a
server answers per CPU second.  Also: ``--idle 10000``
opens that many idle keep-alive connections to loop's WSGIServer and reports memory and a
request's latency while they are held.
"""
import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from _procs import free_port, process_times, stop_process, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

APP = '''
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]
'''

LOOP_PYWSGI = '''
import sys
from helloapp import app
from loop.pywsgi import WSGIServer
WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=False, max_connections=20000,
           backlog=4096).serve_forever()
'''

GEVENT_PYWSGI = '''
import sys
from gevent import monkey; monkey.patch_all()
import socket
from gevent import pywsgi
from helloapp import app
nodelay = sys.argv[2] == "nodelay"
class Handler(pywsgi.WSGIHandler):
    def handle(self):
        if nodelay:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle()
pywsgi.WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=None, handler_class=Handler,
                  backlog=4096).serve_forever()
'''

ASGI_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})
'''

NGINX_CONF = '''
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
    uwsgi_temp_path {dir}; scgi_temp_path {dir};
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "Hello, world!"; }}
    }}
}}
'''


def _answers_200(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return sock.recv(100).startswith(b"HTTP/1.1 200")


def servers(args, workdir):
    """name -> function(port) returning the argv to start it."""
    py, gpy = args.python, args.gevent_python

    def script(name, code):
        path = os.path.join(workdir, name)
        with open(path, "w") as f:
            f.write(code)
        return path

    loop_script = script("loop_pywsgi.py", LOOP_PYWSGI)
    gevent_script = script("gevent_pywsgi.py", GEVENT_PYWSGI)

    def gunicorn(python, worker, path=None):
        def argv(port):
            return [python, "-m", "gunicorn", "-w", "1", "-k", worker, "-b",
                    "127.0.0.1:%d" % port, "--worker-connections", "20000",
                    "--backlog", "4096", "--keep-alive", "75", "--no-control-socket",
                    "--log-level", "warning", "helloapp:app"]
        if path:
            argv.pythonpath = path
        return argv

    def nginx(port):
        conf = os.path.join(workdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=workdir, port=port))
        return [shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf, "-p", workdir]

    def uvicorn(port):
        return [py, "-m", "uvicorn", "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                "--no-access-log", "--log-level", "warning", "--backlog", "4096",
                "--host", "127.0.0.1", "--port", str(port), "helloasgi:app"]

    def granian(port):
        return [py, "-m", "granian", "--interface", "wsgi", "--workers", "1",
                "--blocking-threads", "1", "--backlog", "4096", "--no-ws",
                "--log-level", "warning", "--host", "127.0.0.1", "--port", str(port),
                "helloapp:app"]

    table = {
        "loop WSGIServer": lambda port: [py, loop_script, str(port)],
        "gunicorn -k loop.worker.GreenWorker": gunicorn(py, "loop.worker.GreenWorker"),
        "gunicorn -k loop.worker.GreenGunicornWorker": gunicorn(
            py, "loop.worker.GreenGunicornWorker"),
        "gevent.pywsgi (Nagle)": lambda port: [gpy, gevent_script, str(port), "nagle"],
        "gevent.pywsgi (TCP_NODELAY)": lambda port: [gpy, gevent_script, str(port), "nodelay"],
        "gunicorn -k gevent": gunicorn(gpy, "gevent"),
        "uvicorn (ASGI, httptools + uvloop)": uvicorn,
        "granian (WSGI)": granian,
        "nginx (fixed 200)": nginx,
    }
    if args.h1c_path:
        table["gunicorn -k loop.worker.GreenGunicornWorker + gunicorn_h1c"] = gunicorn(
            py, "loop.worker.GreenGunicornWorker", args.h1c_path)
        table["gunicorn -k gevent + gunicorn_h1c"] = gunicorn(gpy, "gevent", args.h1c_path)
    return table


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(output):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    match = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    p99 = float(match.group(1)) * _UNITS[match.group(2)] if match else None
    errors = re.search(r"Socket errors: (.*)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    return {"requests_per_s": round(rps), "p99_ms": p99 and round(p99, 2),
            "requests": int(total.group(1)) if total else 0,
            "errors": (errors.group(1) if errors else None),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def start_server(make_argv, workdir):
    """Start one server pinned to CPU 0; return (process, port) once it answers."""
    port = free_port()
    argv = make_argv(port)
    path = [SRC, workdir]
    if getattr(make_argv, "pythonpath", None):
        path.append(make_argv.pythonpath)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.Popen(["taskset", "-c", "0"] + argv, cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(
                                os.path.join(workdir, "server.err"), "a"))
    try:
        wait_port(port, 20, _answers_200)
    except BaseException:
        stop_process(proc)
        raise
    return proc, port


def cpu_seconds(root):
    """User + system CPU seconds used so far by ``root`` and all its descendants (a gunicorn
    master and its worker)."""
    parents, times = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)], times[int(entry)] = process_times(int(entry))
            except OSError:
                continue
    total = 0.0
    for pid, seconds in times.items():
        ancestor = pid
        while ancestor > 1 and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor == root:
            total += seconds
    return total


#: wrk's per-request timeout.  Its default, 2 s, leaves the slowest requests out of the latency
#: percentiles (they only count as "timeout" errors), which flatters a server that starves some
#: connections; 10 s keeps them in.
WRK_TIMEOUT = "10s"


def measure(name, port, connections, seconds, warmup=2, pid=None):
    wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c%d" % connections,
           "-d%ds" % seconds, "--timeout", WRK_TIMEOUT, "--latency",
           "http://127.0.0.1:%d/" % port]
    if warmup:
        # warm-up (JIT-less, but caches, pools and the accept backlog settle)
        subprocess.run(wrk[:6] + ["-d%ds" % warmup] + wrk[7:], capture_output=True)
    cpu_before = cpu_seconds(pid) if pid else None
    out = subprocess.run(wrk, capture_output=True, text=True).stdout
    row = {"server": name, "connections": connections, **parse_wrk(out),
           "command": " ".join(wrk)}
    if pid and row["requests"]:
        # Server CPU time per request: unlike req/s, barely moved by other processes
        # competing for the server's CPU.
        row["cpu_us_per_request"] = round(
            (cpu_seconds(pid) - cpu_before) * 1e6 / row["requests"], 1)
    print("%-56s c=%-5d %9d req/s  p99 %8s ms  %6s us CPU/req  %s" % (
        name, connections, row["requests_per_s"], row["p99_ms"],
        row.get("cpu_us_per_request", "-"), row["errors"] or ""), flush=True)
    return row


def run_server(name, make_argv, args, workdir):
    proc, port = start_server(make_argv, workdir)
    try:
        return [measure(name, port, connections, args.duration, pid=proc.pid)
                for connections in args.connections]
    finally:
        stop_process(proc)


def run_interleaved(table, args, workdir):
    """All servers up at once (each pinned to CPU 0, idle while another is measured); then
    ``args.slices`` short wrk runs per server, taking turns, so that load from other processes
    on a shared machine hits every server alike.  The order is reversed every other slice."""
    running = {}
    rows = []
    try:
        for name, make_argv in table.items():
            try:
                running[name] = start_server(make_argv, workdir)
            except Exception as exc:
                print("%-56s failed: %s" % (name, exc), flush=True)
        names = list(running)
        for connections in args.connections:
            for name in names:
                measure(name, running[name][1], connections, 2, warmup=0)
            for number in range(args.slices):
                order = names if number % 2 == 0 else names[::-1]
                for name in order:
                    proc, port = running[name]
                    row = measure(name, port, connections, args.duration, warmup=0,
                                  pid=proc.pid)
                    row["slice"] = number
                    rows.append(row)
    finally:
        for proc, _ in running.values():
            stop_process(proc)
    return rows


def idle_connections(args, workdir):
    """Hold ``args.idle`` idle keep-alive connections open to loop's WSGIServer."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.idle * 2 + 1000), hard))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, workdir]))
    proc = subprocess.Popen(["taskset", "-c", "0", args.python,
                             os.path.join(workdir, "loop_pywsgi.py"), str(port)],
                            cwd=workdir, env=env)
    clients = []
    try:
        wait_port(port, 20, _answers_200)
        rss_before = _rss_kb(proc.pid)
        started = time.monotonic()
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(args.idle):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(request)
            clients.append(sock)
        for sock in clients:
            data = b""
            while not data.endswith(b"Hello, world!"):
                data += sock.recv(4096)
        opened = time.monotonic() - started
        time.sleep(1)
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(request)
            s.recv(4096)
        latency_ms = (time.monotonic() - t0) * 1000
        result = {"idle_connections": args.idle, "seconds_to_open_and_serve": round(opened, 2),
                  "rss_mb_before": round(rss_before / 1024, 1),
                  "rss_mb_with_idle": round(_rss_kb(proc.pid) / 1024, 1),
                  "new_request_latency_ms": round(latency_ms, 2),
                  "server_alive": proc.poll() is None}
        print("idle keep-alive:", result, flush=True)
        return result
    finally:
        for sock in clients:
            sock.close()
        proc.terminate()
        proc.wait(10)


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


BASELINE = "gunicorn -k gevent"


def summarize(rows):
    """Per server and connection count: the median req/s and p99 over the rounds, and the
    ratios to the baseline's medians (req/s: higher is better; p99: lower is better)."""
    from statistics import median
    groups = {}
    for row in rows:
        groups.setdefault((row["server"], row["connections"]), []).append(row)
    medians = {}
    for key, group in groups.items():
        p99s = [row["p99_ms"] for row in group if row["p99_ms"] is not None]
        cpus = [row["cpu_us_per_request"] for row in group if row.get("cpu_us_per_request")]
        medians[key] = (median(row["requests_per_s"] for row in group),
                        median(p99s) if p99s else None, len(group),
                        median(cpus) if cpus else None)
    # Paired: each run against the baseline's run of the same round or slice (closest in
    # time, so under the same outside load), then the median of those ratios.
    baseline_runs = {(row["connections"], row.get("round"), row.get("slice")): row
                     for row in rows if row["server"] == BASELINE}
    paired = {}
    for row in rows:
        base = baseline_runs.get((row["connections"], row.get("round"), row.get("slice")))
        if base is not None and base["requests_per_s"]:
            ratios = paired.setdefault((row["server"], row["connections"]), ([], []))
            ratios[0].append(row["requests_per_s"] / base["requests_per_s"])
            if row["p99_ms"] and base["p99_ms"]:
                ratios[1].append(row["p99_ms"] / base["p99_ms"])
    summary = []
    for (server, connections), (rps, p99, runs, cpu) in medians.items():
        base = medians.get((BASELINE, connections))
        entry = {"server": server, "connections": connections, "runs": runs,
                 "median_requests_per_s": round(rps), "median_p99_ms": p99,
                 "median_cpu_us_per_request": cpu}
        if base is not None and cpu and base[3]:
            # baseline CPU per request / ours: how many times more requests per CPU second
            entry["cpu_efficiency_ratio_to_gevent_worker"] = round(base[3] / cpu, 2)
        if base is not None and base[0]:
            entry["rps_ratio_to_gevent_worker"] = round(rps / base[0], 2)
            if p99 and base[1]:
                entry["p99_ratio_to_gevent_worker"] = round(p99 / base[1], 3)
        rps_ratios, p99_ratios = paired.get((server, connections), ([], []))
        if rps_ratios:
            entry["paired_rps_ratio_median"] = round(median(rps_ratios), 2)
            entry["paired_rps_ratio_min"] = round(min(rps_ratios), 2)
        if p99_ratios:
            entry["paired_p99_ratio_median"] = round(median(p99_ratios), 3)
        summary.append(entry)
        print("%-56s c=%-5d median %9d req/s  p99 %8s ms  %s us CPU/req | vs %s: x%s rps "
              "(paired x%s, min x%s), x%s p99, x%s requests per CPU second" % (
                  server, connections, entry["median_requests_per_s"], p99, cpu, BASELINE,
                  entry.get("rps_ratio_to_gevent_worker", "-"),
                  entry.get("paired_rps_ratio_median", "-"),
                  entry.get("paired_rps_ratio_min", "-"),
                  entry.get("p99_ratio_to_gevent_worker", "-"),
                  entry.get("cpu_efficiency_ratio_to_gevent_worker", "-")), flush=True)
    return summary


def main():
    global WRK_TIMEOUT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", default="100,1000")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--gevent-python", default=sys.executable)
    parser.add_argument("--only", action="append")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--slices", type=int, default=0)
    parser.add_argument("--h1c-path")
    parser.add_argument("--wrk-timeout", default=WRK_TIMEOUT)
    parser.add_argument("--idle", type=int, default=0)
    parser.add_argument("--json", default=os.path.join(HERE, "results", "wsgi.json"))
    args = parser.parse_args()
    args.connections = [int(c) for c in args.connections.split(",")]
    WRK_TIMEOUT = args.wrk_timeout
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    rows = []
    idle = None
    with tempfile.TemporaryDirectory() as workdir:
        for module, source in (("helloapp.py", APP), ("helloasgi.py", ASGI_APP)):
            with open(os.path.join(workdir, module), "w") as f:
                f.write(source)
        table = {name: argv for name, argv in servers(args, workdir).items()
                 if not args.only or name in args.only}
        if args.slices:
            rows = run_interleaved(table, args, workdir)
        for round_number in range(1, args.rounds + 1 if not args.slices else 1):
            for name, argv in table.items():
                try:
                    for row in run_server(name, argv, args, workdir):
                        row["round"] = round_number
                        rows.append(row)
                except Exception as exc:
                    print("%-56s failed: %s" % (name, exc), flush=True)
        if args.idle:
            with open(os.path.join(workdir, "loop_pywsgi.py"), "w") as f:
                f.write(LOOP_PYWSGI)
            idle = idle_connections(args, workdir)
    summary = summarize(rows)
    mode = ("interleaved, %d slices of %ds per server" % (args.slices, args.duration)
            if args.slices else "%ds per run, %d round(s)" % (args.duration, args.rounds))
    report = {"benchmark": "hello-world WSGI, wrk -t1, " + mode,
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "machine": platform.platform(), "python": platform.python_version(),
              "cpus": os.cpu_count(), "rounds": args.rounds, "slices": args.slices,
              "results": rows,
              "summary": summary, "idle": idle}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
