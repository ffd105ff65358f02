"""How the browser tests and scripts/screenshot.py start Debian's Chromium (GUIDE §5)."""

CHROMIUM = "/usr/bin/chromium"
# Headless as root in a sandbox with no network: without the background-networking
# flags Chromium keeps trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
