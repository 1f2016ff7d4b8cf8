"""A real optuna-dashboard server on a tiny study: its HTTP API shows the study, trials and artifacts;
headless Chromium renders a trial page with its learning-curve artifact."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from dashboard_process import start_dashboard

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1400,1300", "--virtual-time-budget=15000"]


def _get(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read(), response.headers.get("Content-Type", "")


def _get_json(url: str) -> dict:
    return json.loads(_get(url)[0])


@pytest.fixture(scope="module")
def dashboard(review_study, tmp_path_factory):
    """``regsweep dashboard`` in its own process on a free port; yields (base URL, study page URL)."""
    process, base, page = start_dashboard(review_study.name, review_study.url, tmp_path_factory.mktemp("dashboard"))
    try:
        yield base, page
    finally:
        process.kill()
        process.communicate(timeout=30)


def test_ctrl_c_stops_the_dashboard_with_one_line_and_exit_code_0(review_study, tmp_path):
    process, base, _ = start_dashboard(review_study.name, review_study.url, tmp_path)
    try:
        assert _get_json(f"{base}/api/studies")["study_summaries"]  # serving before the Ctrl-C
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert err.strip().splitlines()[-1] == "dashboard stopped" and "Traceback" not in err
    with pytest.raises(OSError):  # the port is closed: nothing serves the study any more
        _get(f"{base}/api/studies")


def test_api_shows_study_trials_attrs_and_artifacts(dashboard, review_study):
    base, page = dashboard
    summaries = _get_json(f"{base}/api/studies")["study_summaries"]
    ours = [s for s in summaries if s["study_name"] == review_study.name]
    assert len(ours) == 1
    study_id = ours[0]["study_id"]
    assert page.endswith(f"/dashboard/studies/{study_id}")
    detail = _get_json(f"{base}/api/studies/{study_id}")
    assert len(detail["trials"]) == 5
    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert len(complete) == 4
    for trial in complete:
        attrs = {a["key"] for a in trial["user_attrs"]}
        assert {"n_params", "epochs", "gap", "weight_l1", "weight_l2", "val_loss"} <= attrs
        assert [a["filename"] for a in trial["artifacts"]] == [f"trial-{trial['number']:04d}-curve.png"]
        artifact = trial["artifacts"][0]
        body, content_type = _get(f"{base}/artifacts/{study_id}/{trial['trial_id']}/{artifact['artifact_id']}")
        assert content_type == "image/png" and body[:4] == b"\x89PNG"
    models = sorted(a["filename"] for a in detail["artifacts"])
    assert len(models) == 3 and all(re.fullmatch(r"trial-\d{4}-model\.keras", m) for m in models)
    body, _ = _get(f"{base}/artifacts/{study_id}/{detail['artifacts'][0]['artifact_id']}")
    assert body[:2] == b"PK"  # a .keras file is a zip archive


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
def test_chromium_renders_a_trial_with_its_learning_curve(dashboard, review_study, tmp_path):
    base, page = dashboard
    best = review_study.study.best_trial.number
    url = f"{page}/trials?numbers={best}"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert f"Trial {best}" in dom.stdout
    assert f"trial-{best:04d}-curve.png" in dom.stdout
    screenshot = tmp_path / "dashboard.png"
    subprocess.run([str(CHROMIUM), *flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
    assert screenshot.read_bytes()[:4] == b"\x89PNG" and screenshot.stat().st_size > 30_000
    keep = Path(os.environ.get("REGSWEEP_SCREENSHOT_DIR", tmp_path))
    keep.mkdir(parents=True, exist_ok=True)
    if keep != tmp_path:
        shutil.copy(screenshot, keep / "dashboard.png")
