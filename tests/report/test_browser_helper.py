"""The headless-browser helper itself, on small pages written for each test."""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path

import pytest
from report import browser
from report.browser import find_or_install_chromium, load_page


@pytest.fixture(scope="module")
def chromium() -> str:
    return find_or_install_chromium()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder of this test's own, where the browser's profile is made."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _png(width: int, height: int) -> bytes:
    """A valid RGB PNG, all grey."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10">'
    '<rect width="20" height="10" fill="teal"/></svg>'
)


def _table(caption: str) -> str:
    rows = "".join(f"<tr><td>{caption} {i}</td><td>{i}</td></tr>" for i in range(3))
    return f"<table>{rows}</table>"


@pytest.mark.browser
def test_good_page_loads_cleanly(chromium: str, tmp_path: Path, private_tmp: Path) -> None:
    (tmp_path / "dice.png").write_bytes(_png(4, 3))
    (tmp_path / "plot.svg").write_text(SVG)
    html = tmp_path / "index.html"
    html.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Report</title></head><body>"
        "<h1>Benchmark report</h1><h2>Dice</h2>" + _table("dice") + "<img src='dice.png'>"
        "<h2>HD95</h2>" + _table("hd95") + "<img src='plot.svg'><h3>not counted</h3>"
        "</body></html>"
    )

    page = load_page(chromium, html, timeout=30)

    assert page.console_errors == []
    assert page.title == "Report"
    assert (page.tables, page.table_rows) == (2, 6)
    assert (page.images, page.images_loaded) == (2, 2)
    assert page.headings == ["Benchmark report", "Dice", "HD95"]
    assert list(private_tmp.iterdir()) == [], "the browser's profile was left behind"


@pytest.mark.browser
def test_broken_page_reports_errors(chromium: str, tmp_path: Path) -> None:
    html = tmp_path / "index.html"
    html.write_text(
        "<!doctype html><html><head><title>Broken</title></head><body><h1>Broken</h1>"
        "<img src='missing.png'><script>console.error('boom')</script></body></html>"
    )

    page = load_page(chromium, html, timeout=30)

    assert any("boom" in error for error in page.console_errors), page.console_errors
    assert any("missing.png" in error for error in page.console_errors), page.console_errors
    assert page.images == 1
    assert page.images_loaded < page.images


@pytest.mark.browser
def test_uncaught_exception_is_an_error(chromium: str, tmp_path: Path) -> None:
    html = tmp_path / "index.html"
    html.write_text("<html><body><script>undefinedFunction()</script></body></html>")

    page = load_page(chromium, html, timeout=30)

    assert any("undefinedFunction" in error for error in page.console_errors), page.console_errors


@pytest.mark.browser
def test_a_page_that_never_loads_times_out(
    chromium: str, tmp_path: Path, private_tmp: Path
) -> None:
    html = tmp_path / "index.html"
    html.write_text("<html><body><script>while (true) {}</script></body></html>")

    with pytest.raises(RuntimeError, match="timed out waiting for the load event"):
        load_page(chromium, html, timeout=3)
    assert list(private_tmp.iterdir()) == [], "the browser's profile was left behind"


def test_a_browser_that_does_not_start_is_a_clear_error(tmp_path: Path, private_tmp: Path) -> None:
    fake = tmp_path / "fake-chromium"
    fake.write_text("#!/bin/sh\necho 'no display, giving up' >&2\nexit 1\n")
    fake.chmod(0o755)

    with pytest.raises(RuntimeError, match="no display, giving up"):
        load_page(str(fake), tmp_path / "index.html", timeout=10)
    with pytest.raises(RuntimeError, match="could not start"):
        load_page(str(tmp_path / "absent"), tmp_path / "index.html", timeout=10)
    assert list(private_tmp.iterdir()) == []


def test_no_installable_browser_skips_with_the_scripts_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "ensure_chromium.sh"
    script.write_text("echo 'chromium is not on PATH and apt-get is missing'\nexit 3\n")
    monkeypatch.setattr(browser, "ENSURE_SCRIPT", script)

    with pytest.raises(pytest.skip.Exception, match="apt-get is missing"):
        find_or_install_chromium()
