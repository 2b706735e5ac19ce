"""``cloison export``: download an export archive to a file, with progress lines.

The archive streams to ``<file>.part`` and takes its name only once whole and readable, so
an interrupted download never leaves a file that looks complete. Progress goes to stderr:
bytes received and the rate, against the lines the server announced
(``X-Cloison-Export-Items``); the last line sums up what the manifest counts. The standard
library does the HTTP, so the command needs nothing beyond Python.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

# Why 64 KiB: large enough that a fast link needs few reads, small enough to show progress.
CHUNK_BYTES = 64 * 1024
# Why 1 s: a line per second is readable; on a fast link the download may take less.
PROGRESS_INTERVAL_S = 1.0
TIMEOUT_S = 60.0
MB = 1_000_000


def export_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cloison export",
        description="Download an export archive (docs/privacy.md, Export): your own data, "
        "a user's (server administrators) or a sphere's history (its administrators).",
    )
    parser.add_argument("--url", required=True, help="the server, e.g. https://chat.example.org")
    parser.add_argument(
        "--token",
        default=os.environ.get("CLOISON_TOKEN"),
        help="a bearer token [env CLOISON_TOKEN]",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="the file to write (default: the server's name for it, in the current directory)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--user", default=None, help="a user's data (server administrators)")
    which.add_argument("--sphere", default=None, help="a sphere's history (its administrators)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(list(argv))
    if not args.token:
        parser.error("a token is required (--token or CLOISON_TOKEN)")
    if args.user:
        path = f"/api/v1/admin/users/{urllib.parse.quote(args.user, safe='')}/export"
    elif args.sphere:
        path = f"/api/v1/spheres/{urllib.parse.quote(args.sphere, safe='')}/export"
    else:
        path = "/api/v1/me/export"
    request = urllib.request.Request(
        args.url.rstrip("/") + path, headers={"Authorization": f"Bearer {args.token}"}
    )
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        _say(f"export refused: {_refusal(exc)}")
        return 1
    except (urllib.error.URLError, OSError) as exc:
        _say(f"export failed: cannot reach {args.url}: {exc}")
        return 1
    with response:
        target = Path(args.output or _filename(response.headers.get("Content-Disposition")))
        announced = response.headers.get("X-Cloison-Export-Items", "?")
        if not args.quiet:
            _say(f"export: {announced} items announced, writing {target}")
        partial = target.with_name(target.name + ".part")
        try:
            received, elapsed_s = _download(response, partial, quiet=args.quiet)
            manifest = _manifest(partial)
        except (
            OSError,
            http.client.HTTPException,
            zipfile.BadZipFile,
            KeyError,
            ValueError,
        ) as exc:
            partial.unlink(missing_ok=True)
            _say(f"export failed: the archive is incomplete ({exc}); nothing was kept")
            return 1
    partial.replace(target)
    counts: dict[str, int] = manifest.get("counts", {})
    items = sum(counts.values())
    messages = counts.get("messages.jsonl", counts.get("events.jsonl", 0))
    rate_s = max(elapsed_s, 1e-6)
    _say(
        f"export: wrote {target}: {items} items ({messages} messages), "
        f"{received / MB:.1f} MB in {elapsed_s:.1f} s "
        f"({items / rate_s:,.0f} items/s, {received / MB / rate_s:.1f} MB/s)"
    )
    return 0


def _download(response: IO[bytes], partial: Path, *, quiet: bool) -> tuple[int, float]:
    started = last = time.monotonic()
    received = 0
    with partial.open("wb") as out:
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            received += len(chunk)
            now = time.monotonic()
            if not quiet and now - last >= PROGRESS_INTERVAL_S:
                last = now
                rate = received / MB / (now - started)
                _say(f"export: {received / MB:.1f} MB received ({rate:.1f} MB/s)")
    return received, time.monotonic() - started


def _manifest(path: Path) -> dict[str, Any]:
    """The manifest of a whole archive (a cut one has no central directory: BadZipFile)."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"member {bad} is damaged")
        manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
    return manifest


def _filename(disposition: str | None) -> str:
    """The server's name for the archive, reduced to a bare file name."""
    _, _, value = (disposition or "").partition('filename="')
    name = Path(value.rstrip('"')).name
    return name or "cloison-export.zip"


def _refusal(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        return f"{body['code']}: {body['message']} (HTTP {exc.code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code}"


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
