"""``cloison org sso ...`` against a real store: the secret is read from standard input and
never printed; every change is in the organisation's audit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from storage import open_store
from tests.signin.helpers import org_with_domains

SECRET = "a-secret-that-must-not-be-printed"


def sso(data_dir: Path, *args: str, secret: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "org", "sso", *args, "--data-dir", str(data_dir)],
        input=secret + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_set_show_and_remove(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cloison.sqlite3'}"
    await org_with_domains(url, "acme", [])
    done = sso(
        tmp_path,
        "set",
        "acme",
        "--issuer",
        "https://id.acme.example",
        "--client-id",
        "cloison",
        "--client-secret-stdin",
        "--email-domain",
        "Acme.Example",
        "--provision",
        secret=SECRET,
    )
    assert done.returncode == 0, done.stderr
    shown = sso(tmp_path, "show", "acme")
    assert shown.returncode == 0, shown.stderr
    assert "issuer: https://id.acme.example" in shown.stdout
    assert "email_domains: ['acme.example']" in shown.stdout
    assert SECRET not in done.stdout + shown.stdout + done.stderr + shown.stderr
    store = await open_store(url)
    try:
        config = await store.get_sso("acme")  # type: ignore[arg-type]
        assert config is not None and config.client_secret == SECRET and config.provision
    finally:
        await store.aclose()
    assert sso(tmp_path, "remove", "acme").returncode == 0
    missing = sso(tmp_path, "show", "acme")
    assert missing.returncode == 1 and "no single sign-on" in missing.stderr
    assert sso(tmp_path, "show", "nowhere").returncode == 1
