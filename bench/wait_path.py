"""What a green socket's wait costs: a ping-pong of two green threads over a socket pair, three ways.

    python bench/wait_path.py [--round-trips 200000] [--runs 3] [--timeout SECONDS]

Each round trip is two sends, two receives and two waits (each side waits for the other's byte).
The three ways take turns within each run, in fresh processes, and the table gives each one's
median over the runs, in microseconds per round trip:

* ``loop``       -- loop's green sockets (``recv``/``send``) and the hub's ``wait_fd``: what an
                    application and ``StreamServer`` use;
* ``lean-wait``  -- the same green sockets, with ``Hub.wait_fd`` replaced by the least a wait
                    can do in Python: one kept ``add_reader`` registration per descriptor whose
                    callback switches straight into the waiting green thread.  No ``Waiter``,
                    no timeout, no check of concurrent use, no wake-up source accounting, no
                    clean-up when the wait is left by an exception: a floor, not a design;
* ``floor``      -- plain non-blocking sockets and that same lean wait, called directly (wait
                    first, then one ``recv``): what is left with no green socket layer at all.

The differences split the cost of a round trip between the green socket's Python layers
(``lean-wait`` - ``floor``) and the hub's wait machinery (``loop`` - ``lean-wait``).
"""
import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

CHILD = r'''
import socket as _socket
import sys
import time

import loop
from loop._core.hub import get_hub
from loop._green import socket as green_socket
from loop._switch import getcurrent

way, round_trips, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3]
timeout = None if timeout == "none" else float(timeout)
hub = get_hub()


class LeanSlot:
    __slots__ = ("fiber",)

    def __init__(self):
        self.fiber = None

    def ready(self):
        fiber = self.fiber
        if fiber is not None:
            self.fiber = None
            fiber.switch(self)


slots = {}


def lean_wait(fd, readable=True, timeout=None, timeout_exc=None, owner=None):
    slot = slots.get(fd)
    if slot is None:
        slot = slots[fd] = LeanSlot()
        hub.loop.add_reader(fd, slot.ready)
    slot.fiber = getcurrent()
    hub.fiber.switch()


a, b = _socket.socketpair()
if way == "floor":
    a.setblocking(False)
    b.setblocking(False)

    def receiver(sock):
        def recv(size):
            lean_wait(sock.fileno())
            return sock.recv(size)
        return recv
    recv_a, recv_b = receiver(a), receiver(b)
else:
    a = green_socket.socket(fileno=a.detach())
    b = green_socket.socket(fileno=b.detach())
    a.settimeout(timeout)
    b.settimeout(timeout)
    recv_a, recv_b = a.recv, b.recv
    if way == "lean-wait":
        hub.wait_fd = lean_wait


def echo():
    for _ in range(round_trips):
        b.send(recv_b(100))


peer = loop.spawn(echo)
loop.sleep(0)
started = time.perf_counter()
for _ in range(round_trips):
    a.send(b"x")
    recv_a(100)
elapsed = time.perf_counter() - started
peer.join()
print(elapsed / round_trips * 1e6)
'''

WAYS = ["loop", "lean-wait", "floor"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=200000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", default="none",
                        help="the green sockets' timeout in seconds (default: none)")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [SRC] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    results = {way: [] for way in WAYS}
    for _ in range(args.runs):
        for way in WAYS:
            out = subprocess.run([args.python, "-c", CHILD, way, str(args.round_trips),
                                  args.timeout], env=env, capture_output=True, text=True,
                                 check=True, timeout=600).stdout
            results[way].append(float(out))
    medians = {way: statistics.median(times) for way, times in results.items()}
    for way in WAYS:
        print("%-10s %6.2f us per round trip  (runs: %s)" % (
            way, medians[way], ", ".join("%.2f" % t for t in results[way])))
    print("green socket layers: %.2f us, hub wait machinery: %.2f us per round trip (two waits)"
          % (medians["lean-wait"] - medians["floor"], medians["loop"] - medians["lean-wait"]))


if __name__ == "__main__":
    main()
