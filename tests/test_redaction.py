"""A storage URL's password never appears in clear: not in errors, logs, printed output, reports
or what the study records about itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regsweep.errors import RegsweepError
from regsweep.storage import load_study, make_storage, redact

ROOT = Path(__file__).resolve().parents[1]
SECRET = "Hunter2-xyzzy"


@pytest.mark.parametrize("text", [
    f"postgresql://sweeper:{SECRET}@db.example.org:5432/sweeps",
    f"postgresql+psycopg2://sweeper:{SECRET}@10.0.0.5/sweeps?sslmode=require",
    f"mysql://root:{SECRET}@localhost/x",
    f"postgresql://sweeper:p@ss{SECRET}@host/db",
    f"postgresql://sweeper:{SECRET}/with/slashes@host/db",
    f"postgresql://host/db?user=sweeper&password={SECRET}&application_name=x",
    f"host=db user=sweeper password={SECRET} dbname=sweeps",
    f"error: cannot open 'postgresql://sweeper:{SECRET}@host/db': connection refused",
])
def test_redact_hides_the_password_and_keeps_the_rest(text):
    clean = redact(text)
    assert SECRET not in clean
    assert "***" in clean
    assert "sweeper" in clean or "root" in clean


def test_redact_leaves_urls_without_password_alone():
    for url in ("sqlite:///studies/rings.db", "postgresql://sweeper@host/db", "postgresql://host:5432/db"):
        assert redact(url) == url


def test_python_errors_name_the_storage_without_its_password(tmp_path):
    url = f"postgresql://sweeper:{SECRET}@127.0.0.1:9/sweeps"
    with pytest.raises(RegsweepError) as caught:
        make_storage(url)
    assert SECRET not in str(caught.value) and "127.0.0.1" in str(caught.value)
    with pytest.raises(RegsweepError) as caught:
        load_study(f"redis://u:{SECRET}@h/0", "x")
    assert SECRET not in str(caught.value) and "redis" in str(caught.value)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", [
    ["-m", "sweeps.rings", "-v", "--trials", "1", "--no-plots"],
    ["-m", "regsweep.cli", "status", "-v", "--study", "rings"],
    ["-m", "regsweep.cli", "resume", "-v", "--study", "rings"],
    ["-m", "regsweep.cli", "leaderboard", "-v", "--study", "rings"],
])
def test_cli_errors_and_verbose_logs_never_show_the_password(tmp_path, command):
    done = _run([*command, "--storage", f"postgresql://sweeper:{SECRET}@127.0.0.1:9/sweeps"], tmp_path)
    assert done.returncode == 2
    assert SECRET not in done.stdout + done.stderr
    assert "sweeper:***@127.0.0.1" in done.stderr


def test_log_records_of_any_library_are_redacted(tmp_path):
    code = ("import logging; from regsweep.cli_support import setup_logging; setup_logging(0); "
            f"logging.getLogger('sqlalchemy.engine').warning('connecting to %s', 'postgresql://u:{SECRET}@h/db')")
    done = _run(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "connecting to postgresql://u:***@h/db" in done.stderr and SECRET not in done.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_a_real_sweep_with_a_password_url_leaks_it_nowhere(postgres_url, tmp_path):
    """Sweep, status, leaderboard and HTML report on a password-protected PostgreSQL study."""
    from pg import PASSWORD

    assert PASSWORD in postgres_url
    sweep = tmp_path / "tiny_sweep.py"
    sweep.write_text(
        "from regsweep import SearchSpace\nfrom regsweep.cli import sweep_main\nfrom regsweep.data import make_rings\n"
        "SPACE = SearchSpace(depth=(1, 1), width=(2, 4), patience=(1, 1), max_epochs=2, batch_size=32)\n"
        "raise SystemExit(sweep_main('tiny', SPACE, lambda args: make_rings(n=100, seed=0), trials=2))\n")
    out = tmp_path / "out"
    outputs = [
        _run([str(sweep), "-v", "--storage", postgres_url, "--study", "tiny", "--workers", "1", "--out", str(out)], tmp_path),
        _run(["-m", "regsweep.cli", "status", "-v", "--study", "tiny", "--storage", postgres_url], tmp_path),
        _run(["-m", "regsweep.cli", "leaderboard", "--format", "json", "--state", "all", "--study", "tiny",
              "--storage", postgres_url], tmp_path),
        _run(["-m", "regsweep.cli", "report", "--study", "tiny", "--storage", postgres_url, "-o", str(out / "r.html")],
             tmp_path),
    ]
    for done in outputs:
        assert done.returncode == 0, done.stderr[-3000:]
        assert PASSWORD not in done.stdout + done.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != sweep]
    assert any(p.name == "leaderboard.csv" for p in written) and any(p.suffix == ".html" for p in written)
    for path in written:
        assert PASSWORD.encode() not in path.read_bytes(), path
    study = load_study(postgres_url, "tiny", heartbeat=False)
    recorded = json.dumps([study.user_attrs, study._storage.get_study_system_attrs(study._study_id),
                           [t.user_attrs for t in study.trials],
                           [t.system_attrs for t in study.trials]], default=str)
    assert PASSWORD not in recorded


def test_redact_logs_also_covers_loggers_with_their_own_handlers():
    """Dask's ``distributed`` logger has its own handlers; a worker redacts them too."""
    import io
    import logging

    from regsweep.storage import redact_logs

    stream = io.StringIO()
    logger = logging.getLogger("regsweep_test_own_handlers")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        redact_logs("regsweep_test_own_handlers")
        logger.warning("cannot reach postgresql://me:TopSecret9@db/sweeps")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().strip() == "cannot reach postgresql://me:***@db/sweeps"
