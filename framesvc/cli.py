"""``framesvc`` command line: serve, user, ingest, cache."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from framesvc.config import Settings, settings_from_env

#: Sub-command name -> (configure parser, run).  Modules register with ``command``.
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None],
                           Callable[[argparse.Namespace], int]]] = {}


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]):  # type: ignore[no-untyped-def]
    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = (configure, run)
        return run

    return register


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """Options that locate the store; shared by every command that opens it."""
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data directory (default ./data or FRAMESVC_DATA_DIR)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="media cache directory (default ./cache or FRAMESVC_CACHE_DIR)")
    parser.add_argument("--database-url", default=None,
                        help="SQLAlchemy async URL (default: SQLite in the data dir)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        key: getattr(args, key)
        for key in ("host", "port", "data_dir", "cache_dir", "database_url", "share_root",
                    "workers", "cache_size_limit", "log_level", "processes")
        if hasattr(args, key)
    }
    return settings_from_env(**overrides)


def _process_count(text: str) -> int:
    """``--processes``: a count >= 0, or ``auto`` (0: one per CPU)."""
    if text.strip().lower() == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    add_store_options(parser)
    parser.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8080)")
    parser.add_argument("--share-root", type=Path, default=None,
                        help="root directory for server_files")
    parser.add_argument("--workers", type=int, default=None, help="media worker threads")
    parser.add_argument("--cache-size-limit", type=int, default=None,
                        help="media cache size limit in bytes")
    parser.add_argument("--log-level", default=None, help="logging level (default INFO)")
    parser.add_argument("--processes", type=_process_count, default=None,
                        help="server processes sharing the port: 1 (default), N, or 0/auto "
                             "for one per CPU (FRAMESVC_PROCESSES)")
    # A worker started by the supervisor (framesvc/supervisor.py): the inherited listening
    # sockets, the pipe that reports "accepting", the pipe whose end means "supervisor gone".
    parser.add_argument("--listen-fd", type=int, action="append", default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lifeline-fd", type=int, default=None, help=argparse.SUPPRESS)


@command("serve", _configure_serve)
def serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings.processes < 0:
        raise SystemExit("framesvc: FRAMESVC_PROCESSES must not be negative")
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.listen_fd:
        from framesvc.supervisor import serve_worker

        return serve_worker(settings, args.listen_fd, args.ready_fd, args.lifeline_fd)
    print("framesvc settings:", flush=True)
    for key, value in settings.describe().items():
        print(f"  {key} = {value}", flush=True)
    if settings.process_count > 1:
        from framesvc.supervisor import supervise

        return supervise(settings)

    from framesvc.app import make_app
    from framesvc.http.fastlane import run_app

    run_app(make_app(settings), host=settings.host, port=settings.port,
            print=lambda msg: print(msg, flush=True))
    return 0


#: Modules imported for their ``@command`` registrations.
COMMAND_MODULES: list[str] = [
    "framesvc.commands.user",
    "framesvc.commands.cache",
    "framesvc.commands.ingest",
]


def _load_command_modules() -> None:
    for name in COMMAND_MODULES:
        __import__(name)


def main(argv: list[str] | None = None) -> int:
    _load_command_modules()
    parser = argparse.ArgumentParser(prog="framesvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, _run) in _COMMANDS.items():
        configure(sub.add_parser(name))
    args = parser.parse_args(argv)
    return _COMMANDS[args.command][1](args)


if __name__ == "__main__":
    # Under ``python -m framesvc.cli`` this file is ``__main__``, while command modules
    # register with the importable ``framesvc.cli``: run that module's ``main``.
    from framesvc.cli import main as _main

    sys.exit(_main())
