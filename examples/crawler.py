"""A concurrent crawler: requests, unchanged, made green by :func:`loop.monkey.patch_all`.

    python examples/crawler.py [--concurrency N] URL [URL ...]

Fetches every URL with at most N requests in flight (a :class:`loop.pool.Pool`), printing one
line per URL as it completes, then a summary.  ``patch_all()`` comes first, before requests (and
with it urllib3, socket, ssl) is imported, so every socket requests opens is a green socket.
"""
from loop import monkey

monkey.patch_all()

import argparse     # noqa: E402  (after patching, on purpose)
import time         # noqa: E402

import requests     # noqa: E402

from loop.pool import Pool  # noqa: E402


def fetch(session, url, timeout):
    started = time.monotonic()
    try:
        response = session.get(url, timeout=timeout)
        return url, response.status_code, len(response.content), time.monotonic() - started
    except requests.RequestException as exc:
        return url, type(exc).__name__, 0, time.monotonic() - started


def crawl(urls, concurrency=10, timeout=10.0):
    """Fetch ``urls`` concurrently; yield ``(url, status, size, seconds)`` as each completes."""
    pool = Pool(concurrency)
    with requests.Session() as session:
        # One connection pool per host, big enough for the concurrency we allow.
        adapter = requests.adapters.HTTPAdapter(pool_connections=concurrency,
                                                pool_maxsize=concurrency)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        yield from pool.imap_unordered(lambda url: fetch(session, url, timeout), urls)


def main(argv=None):
    parser = argparse.ArgumentParser(description="fetch URLs concurrently with green threads")
    parser.add_argument("urls", nargs="+", metavar="URL")
    parser.add_argument("--concurrency", "-c", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    started = time.monotonic()
    ok = 0
    for url, status, size, seconds in crawl(args.urls, args.concurrency, args.timeout):
        ok += status == 200
        print(f"{status} {size:>8} bytes {seconds:6.3f}s {url}", flush=True)
    print(f"{ok}/{len(args.urls)} ok in {time.monotonic() - started:.3f}s "
          f"with concurrency {args.concurrency}", flush=True)
    return 0 if ok == len(args.urls) else 1


if __name__ == "__main__":
    raise SystemExit(main())
