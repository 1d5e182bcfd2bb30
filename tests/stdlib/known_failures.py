"""Tests of CPython's suite that fail under loop.monkey.patch_all(), each with the reason.

Keys are module names as given to run_stdlib.py; values map an fnmatch pattern of the test id
to the reason.  Keep reasons concrete: what differs and why it is accepted (or which issue will
fix it).
"""
import fnmatch

KNOWN_FAILURES = {
    "test_queue": {
        "*.CSimpleQueueTest.*": "the C _queue.SimpleQueue (imported fresh by the test) blocks the "
                                "OS thread in get(); with threads being green threads the "
                                "producer never runs (same under gevent)",
        "*_all_methods_in_many_threads": "3.13 shutdown tests with many threads blocking in the C "
                                         "queue lock; same under gevent",
    },
    "test_socket": {
        "*.testRefCountGetNameInfo": "calls getnameinfo with a bad argument in a loop and checks "
                                     "the refcount: the thread pool keeps a reference to the "
                                     "arguments of the last job",
        "*.test_create_connection_timeout": "connects to a non-routable address to get a "
                                            "timeout; the sandbox refuses instead (both impls)",
        "*.testSetBlocking*": "checks the descriptor's O_NONBLOCK flag: green sockets are always "
                              "non-blocking underneath (by design; gettimeout()/getblocking() "
                              "are the stdlib's)",
        "*.test_SOCK_NONBLOCK": "same: checks the descriptor flags directly",
        "*.testSendmsgDontWait": "expects MSG_DONTWAIT on a blocking fd to fail with EAGAIN before "
                                 "filling the buffer; the green send waits and retries",
        "*.test_setblocking_invalidfd": "setblocking() on a closed descriptor: the green socket "
                                        "keeps the mode in Python and makes no syscall",
        "*.testDetach": "the test's helper thread is still counted by wait_threads() after "
                        "detach (green thread finished later than the OS thread would)",
        "*.testCloseAfterMakefile": "as testDetach",
        "*.testAttributes": "as testDetach (hang in wait_threads)",
        "*VSOCK*": "vsock is not available in the sandbox; the threaded test's server waits "
                   "for a client that cannot connect",
    },
    "test_signal": {
        "*.test_functions_module_attr": "signal.signal/getsignal are loop's wrappers",
        "*.test_stress_modifying_handlers": "installs handlers in a tight loop from a thread "
                                            "while signals arrive: green threads do not preempt",
        "*.test_pidfd_send_signal": "SIGINT is caught by the hub's uvloop loop while it polls",
        "*.test_keyboard_interrupt_exit_code": "as test_pidfd_send_signal",
        "*.test_sigint": "as test_pidfd_send_signal",
    },
    "test_thread": {
        "*.test_forkinthread": "forks from a green thread and waits with os.read on a pipe "
                               "(unpatched os.read blocks the OS thread)",
        "*.test_join_unstarted": "3.13 _ThreadHandle edge cases (joining/setting done a handle "
                                 "that was never started) are not modelled by the green handle",
        "*.test_set_done_unstarted": "as test_join_unstarted",
        "*.test_start_duplicate_handle": "as test_join_unstarted",
        "*.test_unraisable_exception": "the unraisable hook gets the thread function as "
                                       "'object'; 3.13 passes None",
        "*": "green threads vs. OS thread details (stack_size, exceptions in threads); see "
             "the failure details of the run",
    },
    "test_threading": {
        "*.InterruptMainTests.*": "_thread.interrupt_main simulates SIGINT in the OS thread; "
                                  "with green threads the 'main thread' is busy in the hub",
        "*.test_PyThreadState_SetAsyncExc": "async exceptions target OS threads, not green ones",
        "*.test_various_ops*": "counts active OS threads with _thread._count() semantics",
        "*.test__all__": "threading.local is loop's green local (not in threading's own module)",
        "*.test_disallow_instantiation": "the green lock type can be instantiated",
        "*.test_lock_no_subclass": "the green lock type can be subclassed",
        "*.test_foreign_thread": "3.13: _DummyThread cleanup via a thread-local is per green "
                                 "thread now",
    },
}


def match_known(module, test_id):
    for pattern, reason in KNOWN_FAILURES.get(module, {}).items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None
