"""What an operator with shell access reads in the data directory: everything but credentials.

After a working day (``privacy_scenario.workday``) the SQLite files are read raw, as anyone
with the host's files can: the text of a live post and a live account's display name are
there in clear; no token secret is, in any file (the database keeps only their SHA-256 digests),
whether the token is live, rotated, revoked or its account deleted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.e2e.conftest import start_server
from tests.e2e.privacy_scenario import Canaries, workday

DATABASE_FILES = ("cloison.sqlite3", "cloison.sqlite3-wal", "cloison.sqlite3-shm")


def raw(data_dir: Path) -> bytes:
    return b"".join((data_dir / name).read_bytes() for name in DATABASE_FILES)


async def test_the_files_hold_texts_in_clear_and_no_token_secret(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    canaries = Canaries()
    try:
        await workday([server], canaries)
        name = canaries.new("name")
        user = await server.new_user(name)
        canaries.secret(user.token)
        body = canaries.new("body")
        sphere_id = await user.create_sphere()
        reply = await user.api(
            "POST", f"/spheres/{sphere_id}/messages", json={"message_id": "m", "body": body}
        )
        assert reply.status_code == 201, reply.text
        # Read while the server runs: the WAL and shared-memory files exist.
        files = raw(server.data_dir)
    finally:
        server.stop()
    secrets_ = {name: v for name, v in canaries.planted.items() if name.startswith("secret")}
    assert len(secrets_) >= 6
    assert [name for name in canaries.found_in(files) if name in secrets_] == []
    # The control: what is stored in clear (a live account's name, a live post) is found by
    # the same search.
    assert name.encode() in files and body.encode() in files
    # What is stored of a token instead: the digest of its secret.
    assert hashlib.sha256(user.token.split("_", 2)[2].encode()).digest() in files
