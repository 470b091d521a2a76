"""Load a static HTML page in a real headless Chromium and report what a reader would see.

The browser is Debian's `chromium`, driven over the Chrome DevTools Protocol (CDP) with the
synchronous client of the `websockets` package; `scripts/ensure_chromium.sh` installs it when
missing, and the tests that need it skip with that script's reason when it cannot.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

REPO_ROOT = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = REPO_ROOT / "scripts" / "ensure_chromium.sh"

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-port=0",
)
# Time left after the load event for late console messages and failed loads to arrive.
SETTLE_S = 0.5

_DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")

# Everything the report needs, counted in the page after it has loaded.
_SUMMARY_JS = """(() => {
  const images = Array.from(document.images);
  return {
    title: document.title,
    tables: document.querySelectorAll("table").length,
    table_rows: document.querySelectorAll("table tr").length,
    images: images.length,
    images_loaded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    headings: Array.from(document.querySelectorAll("h1, h2"), (h) => h.textContent.trim()),
  };
})()"""


@dataclass
class PageReport:
    """What the browser saw of one page once it had loaded."""

    title: str
    console_errors: list[str] = field(default_factory=list)
    tables: int = 0
    table_rows: int = 0
    images: int = 0
    images_loaded: int = 0
    headings: list[str] = field(default_factory=list)


def find_or_install_chromium() -> str:
    """The path of chromium, installed by scripts/ensure_chromium.sh; skip the test if it can't."""
    result = subprocess.run(
        ["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=600, check=False
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        reason = (lines or result.stderr.strip().splitlines() or ["no reason given"])[-1]
        pytest.skip(f"no headless chromium: {reason}")
    return lines[-1].strip()


def load_page(browser: str, html: Path, timeout: float = 60) -> PageReport:
    """Open `html` (a file) in headless `browser` and count what it shows, with console errors.

    Raises RuntimeError when the browser does not start, or the page does not load, within
    `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    uri = Path(html).resolve().as_uri()
    with (
        _chromium(browser, deadline) as ws_url,
        connect(_page_target(ws_url, deadline), open_timeout=10, max_size=None) as ws,
    ):
        cdp = _Cdp(ws)
        for domain in ("Runtime", "Log", "Page"):
            cdp.call(f"{domain}.enable", deadline=deadline)
        navigated = cdp.call("Page.navigate", {"url": uri}, deadline=deadline)
        if navigated.get("errorText"):
            raise RuntimeError(f"chromium could not open {uri}: {navigated['errorText']}")
        cdp.wait_for("Page.loadEventFired", deadline, what=f"the load event of {uri}")
        cdp.drain(min(time.monotonic() + SETTLE_S, deadline))
        evaluated = cdp.call(
            "Runtime.evaluate",
            {"expression": _SUMMARY_JS, "returnByValue": True},
            deadline=deadline,
        )
        if "exceptionDetails" in evaluated:
            raise RuntimeError(f"counting the page failed: {evaluated['exceptionDetails']}")
        summary = evaluated["result"]["value"]
        return PageReport(console_errors=cdp.errors, **summary)


@contextmanager
def _chromium(browser: str, deadline: float) -> Iterator[str]:
    """Run the browser on a fresh profile; yield its DevTools websocket URL; always clean up."""
    profile = tempfile.mkdtemp(prefix="kdbench-chromium-")
    proc = pumper = None
    try:
        try:
            proc = subprocess.Popen(
                [browser, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,  # its own process group, so its helpers end with it
            )
        except OSError as error:
            raise RuntimeError(f"could not start the browser {browser}: {error}") from error
        lines: queue.Queue[str | None] = queue.Queue()
        tail: list[str] = []

        def pump() -> None:  # keeps reading so that a chatty browser never blocks on stderr
            for line in proc.stderr:
                lines.put(line)
            lines.put(None)

        pumper = threading.Thread(target=pump, daemon=True)
        pumper.start()
        while True:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=left) if left > 0 else ""
            except queue.Empty:
                line = ""
            if not line:  # None: stderr closed, the browser is gone; "": out of time
                why = "did not open DevTools in time"
                if line is None:
                    with suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=5)
                    why = f"exited with status {proc.returncode}"
                raise RuntimeError(
                    f"the browser {browser} {why}; its last stderr lines:\n" + "".join(tail[-15:])
                )
            tail.append(line)
            match = _DEVTOOLS_LINE.search(line)
            if match:
                break
        yield match.group(1)
    finally:
        if proc is not None:
            _stop(proc)
            if pumper is not None:
                pumper.join(timeout=5)
            if not (pumper and pumper.is_alive()):
                proc.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)


def _stop(proc: subprocess.Popen[str]) -> None:
    """End the browser, then whatever of its process group outlived it (crash handler, helpers)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)


def _page_target(ws_url: str, deadline: float) -> str:
    """The websocket URL of the browser's page (the about:blank tab it opened)."""
    port = re.match(r"ws://[^/]+:(\d+)/", ws_url).group(1)
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as reply:
            targets = json.load(reply)
        pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        if time.monotonic() > deadline:
            raise RuntimeError(f"chromium offered no page target: {targets}")
        time.sleep(0.05)


class _Cdp:
    """A minimal CDP session over one websocket: calls by id, events kept, errors collected."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.errors: list[str] = []
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, deadline: float
    ) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        while True:
            message = self._receive(deadline, what=f"the reply to {method}")
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"CDP {method} failed: {message['error']}")
                return message.get("result", {})

    def wait_for(self, event: str, deadline: float, *, what: str) -> dict[str, Any]:
        for seen in self._events:
            if seen["method"] == event:
                return seen
        while True:
            message = self._receive(deadline, what=what)
            if message.get("method") == event:
                return message

    def drain(self, until: float) -> None:
        """Take in the events that arrive until the time `until`."""
        while (left := until - time.monotonic()) > 0:
            try:
                self._take(json.loads(self._ws.recv(timeout=left)))
            except TimeoutError:
                return

    def _receive(self, deadline: float, *, what: str) -> dict[str, Any]:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            message = json.loads(self._ws.recv(timeout=left))
        except TimeoutError:
            raise RuntimeError(f"chromium: timed out waiting for {what}") from None
        self._take(message)
        return message

    def _take(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            return
        self._events.append(message)
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(_remote_text(a) for a in params.get("args", []))
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.errors.append(f"uncaught exception: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            self.errors.append(f"{entry.get('source', 'log')}: {entry.get('text', '')}{where}")


def _remote_text(obj: dict[str, Any]) -> str:
    """A CDP RemoteObject as text, the way the console would print it."""
    if "value" in obj:
        return obj["value"] if isinstance(obj["value"], str) else json.dumps(obj["value"])
    return obj.get("description") or obj.get("unserializableValue") or obj.get("type", "")
