"""``framesvc cache stats|clear``: look at or empty the media cache of a (running) service.

Both are safe while servers use the same directory: the cache is process-safe, ``clear``
never removes the partial file of a build that is still running, and readers that hold
an item open keep reading it.  The size limit stored in the cache is left as it is (the
server sets it), so running these commands never changes how much a server may cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from framesvc.cli import command, settings_from_args


def _configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="cache_action", required=True, metavar="{stats,clear}")
    for name, help_text in (("stats", "print entry count, bytes and limit"),
                            ("clear", "remove every entry")):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--cache-dir", type=Path, default=None,
                            help="media cache directory (default ./cache or FRAMESVC_CACHE_DIR)")
        if name == "stats":
            action.add_argument("--json", action="store_true", help="print one JSON object")


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@command("cache", _configure)
def cache_command(args: argparse.Namespace) -> int:
    from framesvc.cache import MediaCache

    cache_dir = settings_from_args(args).cache_dir
    if not (cache_dir / "store").is_dir():
        if args.cache_action == "clear":
            print(f"no media cache in {cache_dir}; nothing to clear")
            return 0
        print(f"no media cache in {cache_dir}")
        return 1
    # No sweep on open: ``stats``/``clear`` sweep themselves and report what they removed.
    cache = MediaCache(cache_dir, io_threads=1, sweep_on_open=False)
    try:
        if args.cache_action == "clear":
            removed = cache.clear()
            print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {cache_dir}")
            return 0
        stats = cache.stats()
    finally:
        cache.close()
    if args.json:
        print(json.dumps(dataclasses.asdict(stats)))
        return 0
    print(f"directory:        {stats.directory}")
    print(f"entries:          {stats.entries}")
    print(f"item bytes:       {stats.bytes} ({_human(stats.bytes)})")
    print(f"volume:           {stats.volume} ({_human(stats.volume)})")
    print(f"size limit:       {stats.size_limit} ({_human(stats.size_limit)})")
    print(f"builds running:   {stats.staging_files}")
    print(f"orphans removed:  {stats.orphans_removed}")
    return 0
