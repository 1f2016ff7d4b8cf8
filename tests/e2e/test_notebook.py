"""The README's Python API example (``workers=2``) run in a real Jupyter kernel through nbclient:
spawned workers must start from a notebook's ``__main__`` (which has no file) and the sweep must
reach its exact total."""

from __future__ import annotations

import pytest
from readme_example import tiny_readme_api_example
from sweep_process import counted_trials, env

from regsweep.lifecycle import OWNER_ATTR
from regsweep.storage import count_states, load_study

pytestmark = pytest.mark.slow

TRIALS = 3


def test_the_readme_api_example_runs_in_a_notebook_kernel_with_two_workers(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    code = tiny_readme_api_example(trials=TRIALS)
    assert "workers=2" in code
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(code),
        nbformat.v4.new_code_cell('import os\nprint("kernel pid:", os.getpid())\nprint("leaderboard rows:", len(board))'),
    ])
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})  # the kernel's working folder
    client.execute(env=env())  # raises CellExecutionError if a cell raised

    outputs = [out for cell in notebook.cells for out in cell.outputs]
    stdout = "".join(out.get("text", "") for out in outputs if out.get("name") == "stdout")
    stderr = "".join(out.get("text", "") for out in outputs if out.get("name") == "stderr")
    assert not [out for out in outputs if out.output_type == "error"]
    assert f"leaderboard rows: {TRIALS}" in stdout
    assert "bootstrapping phase" not in stderr and "Traceback" not in stderr

    # the study the notebook wrote, read back from its SQLite file
    study = load_study(f"sqlite:///{tmp_path / 'studies' / 'mine.db'}", "mine", heartbeat=False)
    assert count_states(study)["finished"] == TRIALS
    assert len(counted_trials(study)) == TRIALS
    # trained in worker processes, not in the kernel itself
    kernel_pid = int(stdout.split("kernel pid:", 1)[1].split()[0])
    owner_pids = {int(t.system_attrs[OWNER_ATTR].rsplit(":", 1)[1]) for t in study.trials if OWNER_ATTR in t.system_attrs}
    assert owner_pids and kernel_pid not in owner_pids
