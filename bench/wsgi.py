"""Hello-world WSGI benchmark, side by side in one run, measured with wrk.

Servers (each in its own process(es) pinned to CPU 0 with ``taskset``; ``wrk -t1`` pinned to
CPU 1), each measured with ``-c100`` and ``-c1000``:

* loop.pywsgi.WSGIServer
* gunicorn -w 1 -k loop.worker.GreenWSGIWorker, and -k loop.worker.GreenWorker
* gevent.pywsgi.WSGIServer (default, Nagle on) and with TCP_NODELAY
* gunicorn -w 1 -k gevent
* nginx returning a fixed 200 (one worker), the ceiling

    python bench/wsgi.py [--duration 10] [--connections 100,1000] [--python PY]
        [--gevent-python PY] [--json bench/results/wsgi.json]

``--python`` must import loop (and gunicorn for the worker rows); ``--gevent-python`` must have
gevent and gunicorn.  Also: ``--idle 10000`` opens that many idle keep-alive connections to
loop's WSGIServer and reports memory and a request's latency while they are held.
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server on port %d did not come up" % port)


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

    def gunicorn(python, worker):
        return lambda port: [python, "-m", "gunicorn", "-w", "1", "-k", worker, "-b",
                             "127.0.0.1:%d" % port, "--worker-connections", "20000",
                             "--backlog", "4096", "--keep-alive", "75", "--no-control-socket",
                             "--log-level", "warning", "helloapp:app"]

    def nginx(port):
        conf = os.path.join(workdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=workdir, port=port))
        return [shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf, "-p", workdir]

    return {
        "loop WSGIServer": lambda port: [py, loop_script, str(port)],
        "gunicorn -k loop.worker.GreenWSGIWorker": gunicorn(py, "loop.worker.GreenWSGIWorker"),
        "gunicorn -k loop.worker.GreenWorker": gunicorn(py, "loop.worker.GreenWorker"),
        "gevent.pywsgi (Nagle)": lambda port: [gpy, gevent_script, str(port), "nagle"],
        "gevent.pywsgi (TCP_NODELAY)": lambda port: [gpy, gevent_script, str(port), "nodelay"],
        "gunicorn -k gevent": gunicorn(gpy, "gevent"),
        "nginx (fixed 200)": nginx,
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(output):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    match = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    p99 = float(match.group(1)) * _UNITS[match.group(2)] if match else None
    errors = re.search(r"Socket errors: (.*)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"requests_per_s": round(rps), "p99_ms": p99 and round(p99, 2),
            "errors": (errors.group(1) if errors else None),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def run_server(name, argv, args, workdir):
    port = free_port()
    argv = argv(port)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, workdir]))
    proc = subprocess.Popen(["taskset", "-c", "0"] + argv, cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(
                                os.path.join(workdir, "server.err"), "a"))
    rows = []
    try:
        wait_port(port)
        for connections in args.connections:
            wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c%d" % connections,
                   "-d%ds" % args.duration, "--latency", "http://127.0.0.1:%d/" % port]
            # warm-up (JIT-less, but caches, pools and the accept backlog settle)
            subprocess.run(wrk[:4] + ["-d2s"] + wrk[5:], capture_output=True)
            out = subprocess.run(wrk, capture_output=True, text=True).stdout
            row = {"server": name, "connections": connections, **parse_wrk(out),
                   "command": " ".join(wrk)}
            rows.append(row)
            print("%-40s c=%-5d %9d req/s  p99 %8s ms  %s" % (
                name, connections, row["requests_per_s"], row["p99_ms"],
                row["errors"] or ""), flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
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
        wait_port(port)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", default="100,1000")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--gevent-python", default=sys.executable)
    parser.add_argument("--only", action="append")
    parser.add_argument("--idle", type=int, default=0)
    parser.add_argument("--json", default=os.path.join(HERE, "results", "wsgi.json"))
    args = parser.parse_args()
    args.connections = [int(c) for c in args.connections.split(",")]
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    rows = []
    idle = None
    with tempfile.TemporaryDirectory() as workdir:
        with open(os.path.join(workdir, "helloapp.py"), "w") as f:
            f.write(APP)
        for name, argv in servers(args, workdir).items():
            if args.only and name not in args.only:
                continue
            try:
                rows.extend(run_server(name, argv, args, workdir))
            except Exception as exc:
                print("%-40s failed: %s" % (name, exc), flush=True)
        if args.idle:
            with open(os.path.join(workdir, "loop_pywsgi.py"), "w") as f:
                f.write(LOOP_PYWSGI)
            idle = idle_connections(args, workdir)
    report = {"benchmark": "hello-world WSGI, wrk -t1, %ds per run" % args.duration,
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "machine": platform.platform(), "python": platform.python_version(),
              "cpus": os.cpu_count(), "results": rows, "idle": idle}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
