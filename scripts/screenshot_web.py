"""Screenshots of the web client for the docs, at a desktop and a phone width.

Starts a throwaway server (a subprocess on a free loopback port, its data in a temporary
directory), seeds a small conversation over the HTTP API, signs in with headless Chromium
(Debian's ``chromium``, driven by Playwright) and writes ``web-client.png``,
``web-client-phone.png`` and ``web-client-portal.png`` (an organisation manager's portal).

    .venv/bin/python scripts/screenshot_web.py [--out-dir docs] [--chromium /usr/bin/chromium]

Bounded: a dozen HTTP requests, two browser pages, and a deadline on every wait.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect, sync_playwright

from scripts.chromium import CHROMIUM_ARGS, DESKTOP, PHONE

# Every wait (server start, HTTP, browser) gives up after this long.
TIMEOUT_S = 30.0
_LISTENING = re.compile(r"listening on [\d.]+:(\d+)")


@dataclass(frozen=True)
class Account:
    user_id: str
    name: str
    token: str


class Server:
    """``python -m server serve`` on a free port, with its log drained in the background."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        command = [sys.executable, "-m", "server", *args, "--data-dir", str(self.data_dir)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
        done.check_returncode()
        return done.stdout

    def start(self) -> None:
        command = [sys.executable, "-m", "server", "serve", "--port", "0"]
        command += ["--data-dir", str(self.data_dir), "--log-level", "info"]
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self._proc = proc
        assert proc.stderr is not None
        deadline = time.monotonic() + TIMEOUT_S
        for line in proc.stderr:
            found = _LISTENING.search(line)
            if found:
                self.port = int(found.group(1))
            if "Application startup complete" in line:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
        else:
            raise RuntimeError(f"the server exited with {proc.wait(TIMEOUT_S)}")
        # Keep reading, or the server blocks once the pipe fills up.
        self._drain = threading.Thread(target=proc.stderr.read, daemon=True)
        self._drain.start()

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        self._proc.wait(TIMEOUT_S)
        if self._drain is not None:
            self._drain.join(TIMEOUT_S)

    def api(self, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.url + "/api/v1" + path,
            method=method,
            data=json.dumps(body or {}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
            return json.load(reply)


@contextmanager
def running_server() -> Iterator[tuple[Server, str]]:
    with tempfile.TemporaryDirectory(prefix="cloison-shot-") as tmp:
        server = Server(Path(tmp))
        out = server.cli("user", "create", "admin", "--admin")
        admin_token = re.search(r"token:\s+(\S+)", out)
        if admin_token is None:
            raise RuntimeError("no admin token in: " + out)
        server.start()
        try:
            yield server, admin_token.group(1)
        finally:
            server.stop()


def seed(server: Server, admin_token: str) -> tuple[dict[str, Account], str]:
    """A few people, spheres and messages. Returns the accounts and the open sphere's id."""
    people = {}
    for name in ("alice", "bob", "chioma", "dmitri"):
        made = server.api(admin_token, "POST", "/admin/users", {"name": name})
        people[name] = Account(made["user_id"], made["name"], made["token"])
    alice, bob = people["alice"], people["bob"]

    def sphere(name: str, privacy: str, members: list[str]) -> str:
        made = server.api(alice.token, "POST", "/spheres", {"name": name, "privacy": privacy})
        sphere_id: str = made["sphere"]["sphere_id"]
        for member in members:
            body = {"user_id": people[member].user_id}
            server.api(alice.token, "POST", f"/spheres/{sphere_id}/members", body)
        return sphere_id

    general = sphere("general", "open", ["bob", "chioma", "dmitri"])
    platform = sphere("platform-team", "private", ["bob", "dmitri"])
    sphere("release-notes", "public", [])

    def post(who: str, sphere_id: str, body: str) -> int:
        payload = {"message_id": f"{who}-{time.monotonic_ns()}", "body": body}
        ack = server.api(people[who].token, "POST", f"/spheres/{sphere_id}/messages", payload)
        return int(ack["offset"])

    post("alice", general, "Morning all! Standup in 10 minutes.")
    post("bob", general, "On my way. The deploy from last night looks healthy.")
    typo = post("chioma", general, "I pushed the migrations fix, reviews welcome.")
    post("dmitri", general, "Looking now.\nTwo small comments, otherwise good to go.")
    server.api(
        people["chioma"].token,
        "PUT",
        f"/spheres/{general}/messages/{typo}",
        {
            "message_id": "chioma-edit",
            "body": "I pushed the migration fix (#212), reviews welcome.",
        },
    )
    oops = post("bob", general, "wrong channel, sorry")
    server.api(
        bob.token, "DELETE", f"/spheres/{general}/messages/{oops}", {"message_id": "bob-del"}
    )
    post("alice", general, "Thanks both. Let's ship it after lunch.")
    for body in ("Pager rotation for next week is up.", "Who can take Thursday?", "I can."):
        post("bob" if body != "I can." else "dmitri", platform, body)
    return people, general


def sign_in(browser: Browser, base_url: str, token: str, sphere_id: str, **context: Any) -> Page:
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.goto(f"{base_url}/#/{sphere_id}")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    expect(page.locator("#messages li[data-offset]")).not_to_have_count(0)
    return page


def portal_shot(browser: Browser, base_url: str, token: str, path: Path) -> None:
    """The organisation portal as its manager (the server's administrator) sees it."""
    context: dict[str, Any] = {"viewport": DESKTOP}
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.goto(base_url)
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    page.get_by_role("button", name="Organisation portal").click()
    portal = page.get_by_role("dialog", name=re.compile(": spheres$"))
    expect(portal.get_by_role("button", name=re.compile("^Manage "))).not_to_have_count(0)
    page.mouse.move(0, 0)
    page.screenshot(path=str(path))
    page.context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path("docs"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with running_server() as (server, admin_token), sync_playwright() as playwright:
        people, general = seed(server, admin_token)
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            bob = sign_in(browser, server.url, people["bob"].token, general, viewport=DESKTOP)
            shots: list[tuple[str, dict[str, Any]]] = [
                ("web-client.png", {"viewport": DESKTOP}),
                ("web-client-phone.png", {"viewport": PHONE, "device_scale_factor": 2}),
            ]
            for filename, context in shots:
                alice = sign_in(browser, server.url, people["alice"].token, general, **context)
                # Bob starts typing, so the shot shows the indicator and him online.
                bob.locator("#composer-input").press_sequentially("Sounds good", delay=20)
                expect(alice.locator("#typing")).to_contain_text("bob is typing")
                alice.mouse.move(0, 0)  # no hover effects in the picture
                path = args.out_dir / filename
                alice.screenshot(path=str(path))
                bob.locator("#composer-input").fill("")
                print(f"{path}: {path.stat().st_size} bytes")
                alice.context.close()
                time.sleep(2)  # the server forwards one typing notice per 2 s and user
            bob.context.close()
            path = args.out_dir / "web-client-portal.png"
            portal_shot(browser, server.url, admin_token, path)
            print(f"{path}: {path.stat().st_size} bytes")
        finally:
            browser.close()
    print(f"done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
