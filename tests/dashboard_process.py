"""Start ``regsweep dashboard`` in its own process, as a user would, and find the URL it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def start_dashboard(study: str, storage: str, cwd: Path) -> tuple[subprocess.Popen, str, str]:
    """``regsweep dashboard`` on a free port; returns (process, base URL, study page URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "regsweep.cli", "dashboard", "--study", study, "--storage", storage, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, stdin=subprocess.DEVNULL,
    )
    line = process.stdout.readline()  # printed once the socket is bound
    match = re.search(r"(http://127\.0\.0\.1:\d+)(/dashboard/studies/\d+)", line)
    if not match:
        process.kill()
        _, err = process.communicate(timeout=30)
        raise AssertionError(f"no URL in {line!r}; stderr: {err[-2000:]}")
    return process, match.group(1), match.group(1) + match.group(2)
