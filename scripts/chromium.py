"""How Cloison's browser checks run Debian's Chromium: the screenshot script and the tests.

As root, on a machine whose network is closed, Chromium needs these flags: no sandbox, and
none of the background connections it would otherwise try at every start.
"""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
