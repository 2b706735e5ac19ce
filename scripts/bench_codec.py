"""Codec cost: microseconds to encode and decode one frame, JSON and MessagePack.

    python -m scripts.bench_codec [--json] [--quick]

Frames: one ``message`` with a 128-byte body (what every live delivery carries), a ``batch`` of
32 of them (what a backlogged connection gets in one WebSocket message), and a
``history_page`` of 50. "decode" validates into frame classes, as every client frame is on the
server; "parse" is the bare ``orjson.loads``/``msgpack.unpackb`` under it, so the difference is
the validation. Last, wrapping 32 already-encoded messages with the byte-level ``batch()``
against encoding a ``Batch`` frame from scratch: the saving that encode-once buys a backlog.

Each figure is the best of ``--repeat`` runs of a loop sized to take at least
``--min-time-s``, so the whole benchmark takes about ten seconds (``--quick``: two).
"""

from __future__ import annotations

import argparse
import functools
import json
import timeit
from collections.abc import Callable
from typing import Any

import msgpack
import orjson

from protocol import (
    Batch,
    Codec,
    EventKind,
    Frame,
    HistoryPage,
    JsonCodec,
    Message,
    MessageId,
    MsgpackCodec,
    SphereId,
    UserId,
)

BODY_BYTES = 128
BATCH_FRAMES = 32
PAGE_MESSAGES = 50


def message(offset: int) -> Message:
    return Message(
        sphere_id=SphereId("s_Xw2b7KpL9mQz4rTe"),
        offset=offset,
        kind=EventKind.POST,
        message_id=MessageId(f"01JDQ8Z4W3K9V6T2{offset:08d}"),
        author_id=UserId("u_4kR2m9QxT1bV7cZa"),
        ts_ms=1_795_945_600_000 + offset,
        body="x" * BODY_BYTES,
    )


def frames() -> dict[str, Frame]:
    return {
        "message": message(1),
        f"batch of {BATCH_FRAMES}": Batch(frames=[message(n) for n in range(1, BATCH_FRAMES + 1)]),
        f"history page of {PAGE_MESSAGES}": HistoryPage(
            sphere_id=SphereId("s_Xw2b7KpL9mQz4rTe"),
            messages=[message(n) for n in range(1, PAGE_MESSAGES + 1)],
            has_more=True,
        ),
    }


def best_us(fn: Callable[[], object], repeat: int, min_time_s: float) -> float:
    """Microseconds per call: the best of ``repeat`` loops of at least ``min_time_s``."""
    timer = timeit.Timer(fn)
    number = 1
    while timer.timeit(number) < min_time_s and number < 10_000_000:  # bounded calibration
        number *= 4
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def parse_for(codec: Codec) -> Callable[[Any], object]:
    if isinstance(codec, JsonCodec):
        return orjson.loads
    return msgpack.unpackb


def measure(repeat: int, min_time_s: float) -> dict[str, Any]:
    def us(fn: Callable[..., object], *args: Any) -> float:
        return round(best_us(functools.partial(fn, *args), repeat, min_time_s), 2)

    rows: list[dict[str, Any]] = []
    codecs: list[tuple[str, Codec]] = [("json", JsonCodec()), ("msgpack", MsgpackCodec())]
    for name, frame in frames().items():
        for encoding, codec in codecs:
            data = codec.encode(frame)
            rows.append(
                {
                    "frame": name,
                    "encoding": encoding,
                    "bytes": len(data.encode() if isinstance(data, str) else data),
                    "encode_us": us(codec.encode, frame),
                    "decode_us": us(codec.decode_server, data),
                    "parse_us": us(parse_for(codec), data),
                }
            )
    wraps: list[dict[str, Any]] = []
    messages = [message(n) for n in range(1, BATCH_FRAMES + 1)]
    for encoding, codec in codecs:
        parts = [codec.encode(m) for m in messages]
        wraps.append(
            {
                "encoding": encoding,
                "frames": BATCH_FRAMES,
                "batch_us": us(codec.batch, parts),
                "encode_batch_us": us(codec.encode, Batch(frames=list(messages))),
            }
        )
    return {"frames": rows, "batch_wrap": wraps}


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{'frame':<22} {'encoding':<8} {'bytes':>7} {'encode µs':>10} {'decode µs':>10}"
        f" {'parse µs':>9}"
    ]
    for row in result["frames"]:
        lines.append(
            f"{row['frame']:<22} {row['encoding']:<8} {row['bytes']:>7,} {row['encode_us']:>10.2f}"
            f" {row['decode_us']:>10.2f} {row['parse_us']:>9.2f}"
        )
    lines.append("")
    lines.append(f"{'wrap 32 encoded':<22} {'encoding':<8} {'batch() µs':>10} {'encode µs':>10}")
    for row in result["batch_wrap"]:
        batch_us, encode_us = row["batch_us"], row["encode_batch_us"]
        lines.append(f"{'':<22} {row['encoding']:<8} {batch_us:>10.2f} {encode_us:>10.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_codec", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="shorter loops (a smoke test)")
    parser.add_argument("--repeat", type=int, default=3, choices=range(1, 51), metavar="1..50")
    parser.add_argument("--min-time-s", type=float, default=0.05, help="at most 2")
    args = parser.parse_args(argv)
    repeat, min_time_s = (2, 0.01) if args.quick else (args.repeat, min(args.min_time_s, 2.0))
    result = measure(repeat, min_time_s)
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
