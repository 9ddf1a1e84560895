"""report.html in a real browser: headless Debian Chromium, driven over the DevTools protocol.

The page is opened from disk; the test takes a full-page screenshot and checks that every image
loaded (``naturalWidth > 0``), that no request left the file (every request is the page itself
or a ``data:`` URI), and that the console shows no error. A control page with a broken image, a
request to a loopback server and a ``console.error`` proves the checks can fail.

Chromium is found at /usr/bin/chromium (``apt-get install chromium``; .ci/run installs it).
Without it the tests skip and say why — except under CI=true, where they fail.

The DevTools client below uses the standard library only: a minimal RFC 6455 WebSocket
(client frames masked, server frames unmasked, fragments joined, pings answered).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--remote-debugging-port=0", "--window-size=1280,900"]
TIMEOUT = 60.0


def need_chromium(binary: str = CHROMIUM, in_ci: bool = IN_CI) -> str:
    if Path(binary).is_file() and os.access(binary, os.X_OK):
        return binary
    why = f"Chromium not found at {binary} (install it: apt-get install -y chromium)"
    if in_ci:
        pytest.fail(f"{why}; it is required under CI=true")
    pytest.skip(why)


# --------------------------------------------------------------------------- a minimal WebSocket
class WebSocket:
    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        assert url.startswith("ws://")
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"WebSocket handshake refused: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.sock.sendall(head + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            fin, opcode, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
            if opcode == 0x9:  # ping
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if fin:
                    return message.decode()

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


# --------------------------------------------------------------------------- the browser
class Browser:
    """Headless Chromium with a fresh profile; :meth:`open` loads one page and reports on it."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="cnnkit-chromium-")
        self.log = open(Path(self.profile) / "stderr.log", "wb")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"Chromium did not start: {self.stderr()[-2000:]}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = WebSocket(f"ws://127.0.0.1:{port}{path}")
        self.next_id = 0
        self.events: list[dict] = []

    def stderr(self) -> str:
        self.log.flush()
        return (Path(self.profile) / "stderr.log").read_text(errors="replace")

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> None:
        seen = lambda: any(e.get("method") == method and e.get("sessionId") == session for e in self.events)  # noqa: E731
        self.ws.sock.settimeout(TIMEOUT)
        while not seen():
            self.events.append(json.loads(self.ws.recv()))

    def open(self, path: Path, screenshot: Path | None = None) -> dict:
        """Load ``path`` and return {"images", "requests", "errors", "height"}."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session)
        self.wait_for("Page.loadEventFired", session)
        check = ("JSON.stringify(Array.from(document.images).map(i => "
                 "({src: i.currentSrc.slice(0, 48), complete: i.complete, width: i.naturalWidth})))")
        images = json.loads(self.call("Runtime.evaluate", {"expression": check, "returnByValue": True},
                                      session)["result"]["value"])
        time.sleep(0.3)  # let late console messages arrive
        self.call("Runtime.evaluate", {"expression": "1"}, session)
        metrics = self.call("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        if screenshot is not None:
            shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                        "clip": {"x": 0, "y": 0, "width": size["width"],
                                                                 "height": size["height"], "scale": 1}}, session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        mine = [e for e in self.events if e.get("sessionId") == session]
        requests = [e["params"]["request"]["url"] for e in mine if e.get("method") == "Network.requestWillBeSent"]
        errors = []
        for e in mine:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description")))
                                                                      for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                errors.append("exception: " + p["exceptionDetails"].get("text", ""))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed":
                errors.append(f"network: {p.get('errorText')}")
        self.call("Target.closeTarget", {"targetId": target})
        return {"images": images, "requests": requests, "errors": errors, "height": size["height"]}

    def close(self) -> None:
        if getattr(self, "ws", None):
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def problems(page: Path, result: dict) -> list[str]:
    """Everything wrong with a loaded page: images not loaded, requests that left it, errors."""
    out = [f"image not loaded: {i['src']}" for i in result["images"] if not (i["complete"] and i["width"] > 0)]
    own = page.resolve().as_uri()
    out += [f"request left the file: {u[:80]}" for u in result["requests"] if u != own and not u.startswith("data:")]
    out += result["errors"]
    return out


@pytest.fixture(scope="module")
def browser():
    b = Browser(need_chromium())
    yield b
    b.close()


# --------------------------------------------------------------------------- tests
def test_missing_chromium_skips_locally_and_fails_under_ci(tmp_path):
    absent = str(tmp_path / "no-chromium")
    with pytest.raises(pytest.skip.Exception, match="Chromium not found"):
        need_chromium(absent, in_ci=False)
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        need_chromium(absent, in_ci=True)


def test_checks_catch_a_bad_page(browser, tmp_path):
    """The control: a broken image, a request to a loopback server and a console error are all caught."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = tmp_path / "bad.html"
        page.write_text(f"""<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head>
<body><img src="missing.png" alt="a"><img src="http://127.0.0.1:{server.server_port}/x.png" alt="b">
<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==" alt="c">
<script>console.error("boom")</script></body></html>""")
        result = browser.open(page)
    finally:
        server.shutdown()
    found = problems(page, result)
    assert sum("image not loaded" in p for p in found) == 2, found
    assert any("request left the file" in p and "127.0.0.1" in p for p in found), found
    assert any("boom" in p for p in found), found
    assert hits == ["/x.png"]
    assert [i["width"] for i in result["images"]][2] == 1  # the data: image did load


def test_report_opens_cleanly_in_chromium(browser, report_run, tmp_path):
    from PIL import Image

    from cnnkit.report import write_report

    page = write_report(report_run)
    shot = tmp_path / "report.png"
    result = browser.open(page, screenshot=shot)
    assert problems(page, result) == []
    assert len(result["images"]) >= 8  # curves, confusion ×2, filters, activations, saliency …
    assert all(i["src"].startswith("data:image/png;base64,") for i in result["images"])
    assert any(u.startswith("data:") for u in result["requests"])  # the request log does see the images
    with Image.open(shot) as img:
        assert img.width >= 900 and img.height == pytest.approx(result["height"], abs=2)
        # a real render, not a blank page: many distinct colours
        assert len(img.convert("RGB").getcolors(1 << 24)) > 1000
    text = page.read_text(encoding="utf-8")
    assert 'class="missing"' not in text, "a section could not be drawn"
    assert "http://" not in text and "https://" not in text


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    from runfolder import make_run

    return make_run(tmp_path_factory.mktemp("run"))
