"""A bounded atheris run over the protocol's decode paths (see ``fuzz_codec.py``)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.conftest import LONG, report_line

RUNS = 1_000_000 if LONG else 20_000  # executions; 20,000 take a few seconds
SEEDS = [
    b'{"type":"publish","sphere_id":"s","message_id":"m","body":"hi","ref":"1"}',
    b'{"type":"batch","frames":[{"type":"ping"}]}',
    b'{"type":"subscribe","sphere_id":"s","since":{"offset":1,"epoch":"e"}}',
    b"\x84\xa4type\xa7publish\xa9sphere_id\xa1s\xaamessage_id\xa1m\xa4body\xa2hi",
]


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_codec_decode_survives_fuzzing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(SEEDS):
        (corpus / f"seed{index}").write_bytes(seed)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.hostile.fuzz_codec",
            f"-runs={RUNS}",
            "-max_len=4096",
            "-rss_limit_mb=1024",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    executed = re.findall(r"#(\d+)\s+DONE", done.stderr)
    assert executed and int(executed[-1]) >= RUNS, done.stderr[-2000:]
    report_line(f"hostile atheris-codec: executions {executed[-1]} crashes 0")
