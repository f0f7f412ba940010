"""Headless Chromium driven over the DevTools protocol: open a page, collect its JavaScript
errors, evaluate expressions, take a screenshot. For the report's tests and benchmark only.

Needs a ``chromium`` binary (``scripts/install_browser.sh``) and the ``websocket-client``
package (the ``test`` extra); both are imported or started only when a ``Browser`` is opened.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
    "--hide-scrollbars", "--window-size=1400,1000",
)


def find_chromium() -> str | None:
    """The Chromium binary: $SWEEPER_CHROMIUM, /usr/bin/chromium, or one on PATH."""
    env = os.environ.get("SWEEPER_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    pass


@dataclass
class PageErrors:
    """What went wrong on a page: uncaught exceptions, console.error calls, failed loads."""

    exceptions: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return self.exceptions + self.console + self.log


class Browser:
    """One headless Chromium with one tab. Use as a context manager."""

    def __init__(self, binary: str | None = None, timeout_s: float = 30.0) -> None:
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("no chromium binary (run scripts/install_browser.sh)")
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []
        self.errors = PageErrors()

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> "Browser":
        import websocket  # websocket-client: a test dependency, imported only here

        self._profile = tempfile.mkdtemp(prefix="sweeper-chromium-")  # a fresh profile every time
        self._proc = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            port = self._devtools_port()
            targets = self._json(f"http://127.0.0.1:{port}/json/list")
            page = next(t for t in targets if t.get("type") == "page")
            # No Origin header: Chromium refuses DevTools sockets from unlisted origins.
            self._ws = websocket.create_connection(
                page["webSocketDebuggerUrl"], timeout=self.timeout_s, suppress_origin=True,
            )
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            stop_process(proc)
        shutil.rmtree(getattr(self, "_profile", ""), ignore_errors=True)

    def _devtools_port(self) -> int:
        # Chromium writes the port it picked (port 0 = any free one) into the profile folder.
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrowserError(f"chromium exited with status {self._proc.returncode} at start")
            if marker.exists():
                first = marker.read_text().splitlines()[:1]
                if first and first[0].strip().isdigit():
                    return int(first[0])
            time.sleep(0.05)
        raise BrowserError("chromium did not open its DevTools port")

    @staticmethod
    def _json(url: str) -> Any:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read().decode())

    # ------------------------------------------------------------------ protocol
    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and wait for its answer (events meanwhile are recorded)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            if "method" in msg:
                self._record(msg)
        raise BrowserError(f"{method}: no answer in {self.timeout_s:.0f} s")

    def _record(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "exception")
            self.errors.exceptions.append(str(text))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            self.errors.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.log.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())

    def _drain(self, seconds: float) -> None:
        """Read events for a while (the socket otherwise only reads while waiting for answers)."""
        end = time.monotonic() + seconds
        self._ws.settimeout(0.05)
        try:
            while time.monotonic() < end:
                try:
                    msg = json.loads(self._ws.recv())
                except Exception:
                    continue
                if "method" in msg:
                    self._record(msg)
        finally:
            self._ws.settimeout(self.timeout_s)

    # ------------------------------------------------------------------ page helpers
    def open(self, url: str) -> float:
        """Navigate and wait for the load event; returns seconds until it fired."""
        self.errors = PageErrors()
        self._events.clear()
        t0 = time.monotonic()
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        deadline = t0 + self.timeout_s
        while time.monotonic() < deadline:
            if any(e["method"] == "Page.loadEventFired" for e in self._events):
                return time.monotonic() - t0
            self._drain(0.05)
        raise BrowserError(f"{url}: no load event in {self.timeout_s:.0f} s")

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluating {expression[:60]!r}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float | None = None, poll_s: float = 0.05) -> float:
        """Poll until ``expression`` is truthy; returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + (timeout_s or self.timeout_s)
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return time.monotonic() - t0
            self._drain(poll_s)
        raise BrowserError(f"timed out waiting for {expression[:80]!r}")

    def events(self, method: str) -> list[dict[str, Any]]:
        """DevTools events of that kind received since the last ``open``."""
        return [e for e in self._events if e["method"] == method]

    def settle(self, seconds: float = 0.3) -> None:
        """Let late events (errors thrown by timers) arrive."""
        self._drain(seconds)

    def screenshot(self) -> bytes:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return base64.b64decode(data)


def is_blank(png: bytes, min_colours: int = 8, min_ink: float = 0.01) -> bool:
    """True when a screenshot is (nearly) one colour: fewer than ``min_colours`` distinct colours
    or less than ``min_ink`` of the pixels differing from the most common one."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20) or []
    if len(colours) < min_colours:
        return True
    total = img.width * img.height
    background = max(colours)[0]
    return (total - background) / total < min_ink


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a child process, and kill it if it has not ended within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
