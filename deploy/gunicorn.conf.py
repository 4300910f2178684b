"""Gunicorn settings for QuickBG's web process: the Procfile, the Dockerfile and docker-compose all
start ``gunicorn quickbg.wsgi --config deploy/gunicorn.conf.py``.

Why gthread: a sync worker serves one request at a time from start to end, including reading the
request body. A client that sends a 2 MB upload at 64 KB/s holds that process for 30 s, and five
of them held every process of the old configuration (sync, 2 processes). A gthread worker hands
each request to one of WEB_THREADS threads, so a slow client holds one thread while the others
keep serving. bench/load.py, 50 fast clients while 5 slow ones send (2 cores, one model worker
running): upload p99 38.8 s -> 203 ms, poll p99 262 ms -> 70 ms, 6.5 -> 55.2 requests/s, no
errors in either (README "Deploy").
Request handling here is short and mostly waits on PostgreSQL, Redis and storage, so threads
share a process well; WEB_CONCURRENCY processes use the cores. A buffering proxy in front
(Caddy's request_buffers, nginx's default proxy_request_buffering) removes slow bodies from the
picture altogether; the threads keep a direct or unbuffered deployment responsive too.

Environment: PORT (8000), HOST (0.0.0.0), WEB_CONCURRENCY (2 processes), WEB_THREADS (8 threads
each), WEB_TIMEOUT (120 s: a request that takes longer has its worker restarted).
"""

import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise SystemExit(f"{name} must be >= 1, got {value}")
    return value


bind = f"{os.environ.get('HOST', '0.0.0.0')}:{_int('PORT', 8000)}"
worker_class = "gthread"
workers = _int("WEB_CONCURRENCY", 2)
threads = _int("WEB_THREADS", 8)
timeout = _int("WEB_TIMEOUT", 120)
graceful_timeout = 30
keepalive = 5
# The heartbeat file on tmpfs: a container's /tmp may be a slow overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
