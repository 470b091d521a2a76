"""Helpers shared by tests (importable because pytest puts tests/ on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "protocols" / "demo.yaml"


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kdbench ARGS`` as a user would, capturing output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KDBENCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kdbench", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, timeout=300,
    )
