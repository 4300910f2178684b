"""``quickbg``: the command line. ``quickbg --help`` and ``quickbg remove --help`` say it all.

Exit status: 0 every file done (or already done), 1 some file failed, 2 a usage, configuration
or authentication error (nothing can succeed until it is fixed).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from quickbg_client import __version__, errors, listing
from quickbg_client.api import Client
from quickbg_client.options import BOOLEAN_OPTIONS, OPTIONS
from quickbg_client.retry import RetryPolicy
from quickbg_client.runner import BATCH_MAX_BYTES, BATCH_SIZE

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    # The common options are accepted before and after the command; SUPPRESS keeps a
    # subcommand's absent option from overwriting one given before it (``_defaults`` fills in).
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--url", help="the server (default: QUICKBG_URL, the config file, or "
                                      "http://127.0.0.1:8000)")
    common.add_argument("--api-key", help="the API key (default: QUICKBG_API_KEY or the config "
                                          "file)")
    common.add_argument("--retries", type=int, metavar="N",
                        help="attempts per request on connection errors, 5xx and 429 "
                             "(default 8)")
    common.add_argument("--json", action="store_true",
                        help="machine-readable output: one JSON object per line")

    parser = argparse.ArgumentParser(
        prog="quickbg", parents=[common],
        description="Remove image backgrounds with a QuickBG server: single files, whole "
                    "folders (resumable), stdin, or a watched folder.",
        epilog="Exit status: 0 all done, 1 some files failed, 2 usage or authentication error.")
    parser.add_argument("--version", action="version", version=f"quickbg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    remove = commands.add_parser(
        "remove", parents=[common], help="remove the background of files, folders or stdin",
        description="Upload each image, wait for its result and write it to the mirrored path "
                    "under OUT. A manifest in OUT makes a rerun skip what is done, resume what "
                    "was uploaded (never uploading it twice), and redo nothing unless --force.",
        epilog="Exit status: 0 all done, 1 some files failed, 2 usage or authentication error.")
    remove.add_argument("paths", nargs="+", metavar="PATH",
                        help="image files and folders (walked recursively), or - for stdin")
    remove.add_argument("-o", "--output", metavar="OUT",
                        help="output folder (for stdin: a file, a folder, or - for stdout)")
    remove.add_argument("-j", "--jobs", type=int, default=4, metavar="N",
                        help="concurrent uploads (default 4)")
    remove.add_argument("--glob", action="append", default=[], metavar="PATTERN",
                        help="which files of a folder to take (repeatable; default: "
                             + " ".join(listing.DEFAULT_PATTERNS) + ")")
    remove.add_argument("--force", action="store_true",
                        help="redo files the manifest has as done (new tasks)")
    remove.add_argument("--watch", action="store_true",
                        help="after the first pass keep running and process new files")
    remove.add_argument("--max-pending", type=int, default=16, metavar="N",
                        help="tasks uploaded but not yet finished, at most (default 16; keep "
                             "it under the server's QUICKBG_MAX_QUEUED_TASKS)")
    remove.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="small files go N to one POST /api/v1/batches (default "
                             f"{BATCH_SIZE}; 1 sends every file on its own)")
    remove.add_argument("--batch-max-kb", type=int, default=None, metavar="KB",
                        help="what a small file is, at most (default "
                             f"{BATCH_MAX_BYTES // 1024} KB); larger ones go one by one")
    remove.add_argument("--no-progress", action="store_true", help="no progress bar")
    remove.add_argument("--model", help="the model (see `quickbg models`; default: the "
                                        "server's)")
    for name, help_text in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if name in BOOLEAN_OPTIONS:
            remove.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            remove.add_argument(flag, dest=name, default=None, help=help_text)

    status = commands.add_parser("status", parents=[common], help="show a task")
    status.add_argument("task", metavar="TASK", help="the task id")
    commands.add_parser("account", parents=[common], help="this month's credits")
    commands.add_parser("models", parents=[common], help="the models the server offers")
    return parser


class Output:
    """Where a run's lines go: a progress bar on a terminal, JSON lines, or plain lines."""

    def __init__(self, args: argparse.Namespace, show_progress: bool):
        self.json = args.json
        self.bar = None
        if show_progress:
            from tqdm import tqdm

            self.bar = tqdm(total=None, unit="img", file=sys.stderr,
                            desc="quickbg")
        self.lock = threading.Lock()

    def note(self, message: str) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.write(f"quickbg: {message}", file=sys.stderr)
            else:
                print(f"quickbg: {message}", file=sys.stderr, flush=True)

    def result(self, result) -> None:
        with self.lock:
            if self.json:
                print(json.dumps(result.to_dict()), flush=True)
            elif self.bar is None:
                target = f" -> {result.output}" if result.output else ""
                error = f": {result.error}" if result.error else ""
                print(f"{result.status:7} {result.input}{target}{error}", flush=True)
            elif result.status == "failed":
                self.bar.write(f"failed  {result.input}: {result.error}", file=sys.stderr)
            if self.bar is not None:
                self.bar.update(1)

    def total(self, n: int) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.total = n
                self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _options(args: argparse.Namespace) -> dict:
    names = [*OPTIONS, "model"]
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _client(args: argparse.Namespace, note=None) -> Client:
    return Client(args.url, args.api_key, retries=RetryPolicy(attempts=max(1, args.retries)),
                  on_retry=note)


def _remove_stdin(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read()
    if not data:
        print("quickbg: stdin is empty", file=sys.stderr)
        return EXIT_USAGE

    def note(message: str) -> None:
        print(f"quickbg: {message}", file=sys.stderr, flush=True)

    with _client(args, note) as client:
        try:
            result = client.remove(data, **_options(args))
        except (errors.AuthError, errors.ConfigError):
            raise
        except errors.APIError as exc:
            if exc.option_error:
                raise
            print(f"quickbg: stdin: {exc.detail}", file=sys.stderr)
            return EXIT_FAILED
        except errors.TaskFailed as exc:
            print(f"quickbg: stdin: {exc.message}", file=sys.stderr)
            return EXIT_FAILED
    target = args.output or "-"
    if target == "-":
        sys.stdout.buffer.write(result)
        sys.stdout.buffer.flush()
        return EXIT_OK
    path = Path(target)
    if path.is_dir() or target.endswith(("/", "\\")):
        extension = str(args.format or "png").lower().replace("jpeg", "jpg")
        path = path / f"stdin.{'png' if extension == 'auto' else extension}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(result)
    print(f"quickbg: wrote {path}", file=sys.stderr)
    return EXIT_OK


def _remove(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if "-" in args.paths:
        if len(args.paths) > 1 or args.watch:
            parser.error("- (stdin) must be the only PATH, without --watch")
        return _remove_stdin(args)
    if not args.output:
        parser.error("-o OUT is required (the folder the results go to)")
    if args.jobs < 1 or args.max_pending < 1 or (args.batch_size or 1) < 1:
        parser.error("-j, --max-pending and --batch-size must be at least 1")
    sources = [Path(p) for p in args.paths]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    if args.watch and not any(p.is_dir() for p in sources):
        parser.error("--watch needs a folder to watch")
    output = Path(args.output)
    show = not args.no_progress and sys.stderr.isatty()
    out = Output(args, show)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    failures: list[str] = []
    started = time.monotonic()
    if show and not args.watch:  # the bar's total (and so its ETA) from a second, cheap walk
        threading.Thread(target=lambda: out.total(
            listing.count(sources, args.glob, output)), daemon=True).start()
    interrupted = False
    try:
        with _client(args, out.note) as client:
            results = client.remove_folder(
                sources, output, jobs=args.jobs, glob=args.glob, force=args.force,
                watch=args.watch, max_pending=args.max_pending, batch_size=args.batch_size,
                batch_max_bytes=(None if args.batch_max_kb is None
                                 else args.batch_max_kb * 1024),
                on_watching=lambda: out.note("first pass listed; watching for new files "
                                             "(Ctrl-C stops)"),
                **_options(args))
            try:
                for result in results:
                    counts[result.status] += 1
                    if result.status == "failed" and len(failures) < 20:
                        failures.append(f"  {result.input}: {result.error}")
                    out.result(result)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                results.close()
    finally:
        out.close()
    elapsed = time.monotonic() - started
    rate = counts["done"] / elapsed if elapsed > 0 else 0.0
    stopped = " (interrupted)" if interrupted else ""
    print(f"quickbg: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} "
          f"failed in {elapsed:.1f} s ({rate:.2f} images/s){stopped}"
          f"; manifest {output / '.quickbg-manifest.sqlite3'}", file=sys.stderr)
    if failures:
        print("quickbg: failed:\n" + "\n".join(failures), file=sys.stderr)
    if interrupted and not args.watch:  # Ctrl-C (or SIGTERM) ends a --watch run: no error
        return 130
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _show(args: argparse.Namespace, value, text: str) -> None:
    print(json.dumps(value) if args.json else text)


COMMON_DEFAULTS = {"url": None, "api_key": None, "retries": 8, "json": False}


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, systemd, a container stop) ends a run like Ctrl-C: results so far
    are recorded and a rerun resumes."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    _stop_on_sigterm()
    parser = _parser()
    args = parser.parse_args(argv)
    for name, default in COMMON_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        if args.command == "remove":
            return _remove(args, parser)
        with _client(args) as client:
            if args.command == "status":
                task = client.task(args.task)
                lines = [f"{k}: {task.get(k)}" for k in (
                    "task_id", "status", "progress", "error_message", "filename", "model",
                    "processing_time", "created_at", "finished_at", "presigned_url")]
                _show(args, task, "\n".join(lines))
                return EXIT_FAILED if task["status"] == "failed" else EXIT_OK
            if args.command == "account":
                credits = client.account()
                limit = credits.get("monthly_limit")
                _show(args, credits, f"credits used this month: {credits.get('total')}"
                      + (f" of {limit} (remaining {credits.get('remaining')})" if limit
                         else " (no monthly limit)"))
                return EXIT_OK
            if args.command == "models":
                models = client.models()
                _show(args, models, "\n".join(
                    m["name"] + (f"  {m['description']}" if m.get("description") else "")
                    for m in models))
                return EXIT_OK
    except errors.ConfigError as exc:
        print(f"quickbg: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except errors.AuthError as exc:
        print(f"quickbg: the server refused the API key ({exc.status}): {exc.detail}",
              file=sys.stderr)
        return EXIT_USAGE
    except errors.APIError as exc:
        if exc.option_error:
            print(f"quickbg: {exc.detail}", file=sys.stderr)
            return EXIT_USAGE
        print(f"quickbg: {exc.status}: {exc.detail}", file=sys.stderr)
        return EXIT_FAILED if isinstance(exc, errors.CreditsExhausted) or exc.status != 404 \
            else EXIT_USAGE
    except __import__("httpx").TransportError as exc:
        print(f"quickbg: cannot reach the server: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
