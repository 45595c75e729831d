"""Probe: does the engine's coming and going of networks make Chromium fail requests to 127.0.0.1?

A page of 60 scripts, each answered after 150 ms by a server on 127.0.0.1, is loaded 5 times in the kit's headless
Chromium (mlflowkit.ui), once on a quiet host ("steady") and once while a Docker network and a container on it are
made and removed in a loop ("flip"). Prints the errors Chromium logged. Seen on the 2-core CI machine (2026-12-07):
steady 310 requests, no error; flip 310 requests, 253 failed with net::ERR_NETWORK_CHANGED (5 network cycles).
So a UI check fails whenever the engine changes its interfaces meanwhile (another stack starting or stopping, a
`compose run --rm`): mlflowkit/ui.py reloads such a page and asks failed URLs again.

    .venv/bin/python benchmarks/probes/chromium_network_change.py steady|flip
"""

from __future__ import annotations

import collections
import http.server
import socketserver
import subprocess
import sys
import threading
import time

from mlflowkit import ui

SCRIPTS = 60
NETWORK, CONTAINER, IMAGE = "mlflowkit-probe-net", "mlflowkit-probe-c", "mlflowkit/base:bookworm"


class Page(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/":
            body = ("<html><body>" + "".join(f'<script src="/s{i}.js"></script>' for i in range(SCRIPTS))
                    + "done</body></html>").encode()
        else:
            time.sleep(0.15)  # in flight long enough to see what a network change does to it
            body = b"var x = 1;"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def cycle_networks(stop: threading.Event, cycles: list[int]) -> None:
    def docker(*argv: str) -> None:
        subprocess.run(["docker", *argv], check=False, capture_output=True, timeout=60)

    for _ in range(100):  # bounded; the page loads end it much sooner
        if stop.is_set():
            break
        docker("network", "create", NETWORK)
        docker("run", "-d", "--rm", "--name", CONTAINER, "--network", NETWORK, IMAGE, "sleep", "2")
        time.sleep(0.5)
        docker("rm", "-f", CONTAINER)
        docker("network", "rm", NETWORK)
        cycles[0] += 1


def main(mode: str) -> None:
    server = Server(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop, cycles = threading.Event(), [0]
    flipper = threading.Thread(target=cycle_networks, args=(stop, cycles)) if mode == "flip" else None
    browser = ui.browser()
    browser.reset()
    if flipper:
        flipper.start()
    try:
        for _ in range(5):
            browser.open(f"http://127.0.0.1:{server.server_address[1]}/")
            time.sleep(1)
        browser.drain()
    finally:
        stop.set()
        if flipper:
            flipper.join(timeout=120)
        ui.close()
        server.shutdown()
    errors = collections.Counter(r.error for r in browser.requests if r.error)
    print(f"{mode}: {len(browser.requests)} requests, {cycles[0]} network cycles, errors: {dict(errors)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "flip")
