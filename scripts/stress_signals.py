"""Stress the second Ctrl-C: repeat it N times against real worker processes and a real SQLite file.

Each run starts a 2-worker sweep of 3 long trials, waits until both workers train, sends
SIGINT, waits until the sweep says it is stopping, sends SIGINT again, then resumes with the
same command. For each run it prints the exit code of the interrupted sweep, whether a
traceback appeared on its stderr, and whether the resume reached the exact total.

    python scripts/stress_signals.py --runs 20

Exit code 0 when every run was clean (exit 130, one line, no traceback, exact total after resume).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sweep_process import env, sweep_cmd, trials, write_sweep  # noqa: E402

TOTAL = 3


def wait_for_two_running(db: Path, process: subprocess.Popen, timeout: float = 300) -> bool:
    """Poll the study until two trials are RUNNING (a bounded polling loop, not synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if sum(row["state"] == "RUNNING" for row in trials(db)) == 2:
            return True
        time.sleep(0.05)
    return False


def one_run(folder: Path, index: int) -> dict[str, object]:
    """The second-Ctrl-C scenario once; returns what a reviewer checks."""
    sweep, db = write_sweep(folder, epochs=100), folder / "stress.db"
    cmd = sweep_cmd(sweep, db, trials=TOTAL, workers=2, seed=index)
    process = subprocess.Popen(cmd, cwd=folder, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait_for_two_running(db, process):
        process.kill()
        out, err = process.communicate()
        return {"run": index, "code": process.returncode, "traceback": "Traceback" in err, "resumed": False,
                "note": "never had two running trials: " + err.strip()[-300:]}
    process.send_signal(signal.SIGINT)
    seen = []
    assert process.stderr is not None
    for line in process.stderr:  # two back-to-back signals arrive as one: wait until the first is handled
        seen.append(line)
        if line.startswith("stopping:"):
            break
    process.send_signal(signal.SIGINT)
    second = time.monotonic()
    out, err = process.communicate(timeout=600)
    stop_seconds = time.monotonic() - second
    err = "".join(seen) + err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    resume = subprocess.run(cmd, cwd=folder, env=env(), capture_output=True, text=True, timeout=600)
    rows = trials(db)
    finished = sum(row["state"] in ("COMPLETE", "PRUNED") for row in rows)
    left = sum(row["state"] in ("RUNNING", "WAITING") for row in rows)
    return {
        "run": index, "code": process.returncode, "traceback": "Traceback" in err or "Traceback" in resume.stderr,
        "stop_seconds": stop_seconds,
        "one_line": last.startswith("regsweep: interrupted"), "resume_code": resume.returncode,
        "resumed": resume.returncode == 0 and finished == TOTAL and left == 0,
        "note": "" if process.returncode == 130 else err.strip()[-1500:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    clean = 0
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="regsweep-stress-") as tmp:
            started = time.monotonic()
            result = one_run(Path(tmp), index)
        ok = result["code"] == 130 and not result["traceback"] and result.get("one_line") and result["resumed"]
        clean += bool(ok)
        print(f"run {index + 1:2d}/{args.runs}: exit {result['code']}, traceback {'yes' if result['traceback'] else 'no'}, "
              f"one line {'yes' if result.get('one_line') else 'no'}, resume exact total "
              f"{'yes' if result['resumed'] else 'no'}; stopped {result.get('stop_seconds', float('nan')):.1f} s after the "
              f"second Ctrl-C ({time.monotonic() - started:.0f} s in all)", flush=True)
        if not ok and result["note"]:
            print("    " + str(result["note"]).replace("\n", "\n    "), flush=True)
    print(f"{clean}/{args.runs} clean second Ctrl-Cs")
    return 0 if clean == args.runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
