"""The README's Python API example, read from README.md (so the tests run what users copy) and shrunk
to a tiny sweep: 120 rings points, 3 trials of at most 2 epochs, no saved models, no progress bar."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

# (README text, tiny replacement): each must occur in the example, so a README edit that drops one
# fails here instead of silently running the full 40-trial sweep.
SHRINK = (
    ("width=64)", "width=8, max_epochs=2, batch_size=32)"),
    ("make_rings(n=1000)", "make_rings(n=120)"),
    ("trials=40,", "trials={trials}, progress=False, keep_top=0,"),
)


def readme_api_example() -> str:
    """The first ```python block under the README's "## Python API" heading, as written."""
    section = README.read_text(encoding="utf-8").split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md: no ```python block under '## Python API'"
    return match.group(1)


def tiny_readme_api_example(trials: int = 3) -> str:
    """The README example with the study, workers and seed it names, on tiny data and trials."""
    code = readme_api_example()
    for old, new in SHRINK:
        assert old in code, f"README.md's Python API example no longer contains {old!r}"
        code = code.replace(old, new.format(trials=trials))
    return code
