"""An atheris fuzz target for the protocol's decode paths (run by ``test_fuzz_codec.py``).

Every input goes through both codecs' ``decode_client`` and ``decode_server`` (as bytes, and
as text for JSON). The only exception allowed out is ``ProtocolViolation`` (``FrameTooLarge``
included): anything else is a crash that atheris reports with the input that caused it.

Usage: ``python -m tests.hostile.fuzz_codec -runs=20000 [corpus_dir]`` (libFuzzer flags).
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from protocol import JsonCodec, MsgpackCodec, ProtocolViolation

CODECS = (JsonCodec(), MsgpackCodec())


def one_input(data: bytes) -> None:
    for codec in CODECS:
        for decode in (codec.decode_client, codec.decode_server):
            with contextlib.suppress(ProtocolViolation):
                decode(data)
    text = data.decode("utf-8", errors="replace")
    for decode in (CODECS[0].decode_client, CODECS[0].decode_server):
        with contextlib.suppress(ProtocolViolation):
            decode(text)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
