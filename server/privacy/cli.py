"""``cloison privacy``: the operator's privacy commands.

``cloison privacy compact`` rewrites the store so that no erased byte is left in its files
(PostgreSQL: ``VACUUM (FULL)`` of every table of the schema, each locked while it is
rewritten; SQLite: a checkpoint that truncates the write-ahead log). It prints each table's
duration and sizes, and exits 1 when a table was skipped (its lock was held) or the store
failed, so that cron reports it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from server.cli import admin_config, store_options, with_store
from storage import Store


def privacy_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cloison privacy", description="Privacy operations.")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser(
        "compact",
        parents=[store_options()],
        help="rewrite the store so that erased content leaves its files (PostgreSQL: "
        "locks each table while it is rewritten)",
    )
    namespace = parser.parse_args(argv)
    return asyncio.run(with_store(admin_config(parser, namespace), _compact))


async def _compact(store: Store) -> int:
    report = await store.compact()
    for table in report.tables:
        state = f"skipped ({table.skipped})" if table.skipped else f"{table.seconds:.3f} s"
        print(
            f"{table.table:<20} {table.bytes_before:>12} -> {table.bytes_after:>12} bytes  {state}"
        )
    print(f"compacted in {report.seconds:.3f} s")
    if not report.complete:
        print("error: some tables were not compacted; run again", file=sys.stderr)
        return 1
    return 0
