"""Every plot is written, as PNG and SVG, for a normal, a one-trial and an all-failed study."""

from __future__ import annotations

import pytest

from regsweep.cli import main
from regsweep.errors import SettingsError
from regsweep.plots import PLOTS, pareto_front, param_importances, plot_trial_curve, trial_curve_figure, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_written(paths, out_dir, formats=("png", "svg")):
    assert sorted(p.name for p in paths) == sorted(f"{name}.{fmt}" for name in PLOTS for fmt in formats)
    for path in paths:
        assert path.parent == out_dir and path.stat().st_size > 1000
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC
        else:
            assert path.read_text().lstrip().startswith("<?xml") and "<svg" in path.read_text()


def _titles(paths) -> dict[str, str]:
    """The SVG text of each plot (with ``svg.fonttype = none`` titles and labels are <text> elements)."""
    return {p.stem: p.read_text() for p in paths if p.suffix == ".svg"}


@pytest.fixture
def svg_text_as_text():
    """Keep text as <text> elements in SVGs, so tests can read titles and messages."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        yield


@pytest.mark.slow
def test_all_plots_for_a_normal_study(review_study, tmp_path, svg_text_as_text):
    paths = write_plots(review_study.study, tmp_path, formats=("png", "svg"))
    _check_written(paths, tmp_path)
    svgs = _titles(paths)
    assert "review: validation loss vs model complexity (4 finished trials)" in svgs["complexity"]
    assert "trainable parameters (log scale)" in svgs["complexity"] and "Pareto front" in svgs["complexity"]
    best = review_study.study.best_trial.number
    assert f"best: trial {best}" in svgs["complexity"]
    assert "review: learning curves" in svgs["learning_curves"] and "epoch" in svgs["learning_curves"]
    assert f"#{best} " in svgs["learning_curves"]
    assert "review: optimization history (4 finished trials)" in svgs["history"]
    assert "best so far" in svgs["history"]
    assert "review: hyperparameter importances (4 complete trials)" in svgs["importances"]


@pytest.mark.slow
def test_all_plots_for_a_one_trial_study(one_trial_study, tmp_path, svg_text_as_text):
    paths = write_plots(one_trial_study.study, tmp_path, formats=("png", "svg"))
    _check_written(paths, tmp_path)
    svgs = _titles(paths)
    assert "(1 finished trials)" in svgs["complexity"] and "best: trial 0" in svgs["complexity"]
    assert "needs at least 2 complete trials" in svgs["importances"]
    assert param_importances(one_trial_study.study) == {}


def test_all_plots_for_an_all_failed_study(failed_study, tmp_path, svg_text_as_text):
    paths = write_plots(failed_study.study, tmp_path, formats=("png", "svg"))
    _check_written(paths, tmp_path)
    svgs = _titles(paths)
    for name in ("complexity", "learning_curves", "history"):
        assert "no finished trials yet" in svgs[name]
        assert f"{failed_study.name}:" in svgs[name]


def test_cli_plot_selects_plots_and_formats(failed_study, tmp_path, capsys):
    code = main(["plot", "--study", failed_study.name, "--storage", failed_study.url, "--out", str(tmp_path),
                 "--which", "history", "importances", "--format", "svg"])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.svg", "importances.svg"]
    assert main(["plot", "--study", failed_study.name, "--storage", failed_study.url, "--which", "pie"]) == 2
    assert "--which" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="pdf"):
        write_plots(failed_study.study, tmp_path, formats=("pdf",))


def test_trial_curve_figure_holds_both_curves_the_best_epoch_and_a_title():
    train, val = [0.9, 0.7, 0.6], [1.0, 0.8, 0.85]
    figure = trial_curve_figure("s", 3, train, val)
    (ax,) = figure.axes
    assert ax.get_title() == "s: trial 3 learning curve"
    assert ax.get_xlabel() == "epoch" and "loss" in ax.get_ylabel()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["validation"].get_ydata()) == val and list(lines["training"].get_ydata()) == train
    assert list(lines["validation"].get_xdata()) == [1, 2, 3]
    (star,) = ax.collections  # the best epoch: epoch 2, loss 0.8
    assert star.get_offsets().tolist() == [[2.0, 0.8]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["validation", "training", "best epoch 2: 0.8000"]


def test_trial_curve_png_shows_the_drawn_curves(tmp_path):
    import matplotlib.image
    import numpy as np

    path = plot_trial_curve("s", 3, [0.9, 0.7, 0.6], [1.0, 0.8, 0.85], tmp_path / "c.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = matplotlib.image.imread(path)[..., :3]
    assert pixels.shape[:2] == (306, 495)  # 5.5 x 3.4 inches at 90 dpi
    orange = np.abs(pixels - np.array([0xD9, 0x5F, 0x02]) / 255).sum(axis=-1) < 0.1  # the validation line
    green = np.abs(pixels - np.array([0x1B, 0x9E, 0x77]) / 255).sum(axis=-1) < 0.1  # the training line
    assert orange.sum() > 200 and green.sum() > 100


@pytest.mark.parametrize("x, y, front", [
    ([1, 2, 3], [3, 2, 1], ([1, 2, 3], [3, 2, 1])),
    ([1, 2, 3], [1, 2, 3], ([1], [1])),
    ([3, 1, 2], [0.5, 0.9, 0.7], ([1, 2, 3], [0.9, 0.7, 0.5])),
])
def test_pareto_front_keeps_lowest_loss_per_complexity(x, y, front):
    assert pareto_front(x, y) == front


def test_a_reused_curve_figure_draws_each_trial_as_a_new_figure_would(tmp_path):
    """plot_trial_curve redraws one figure per thread: nothing of an earlier trial (its longer curve,
    its limits, its best epoch) may show in the next one, including after a trial with no finite loss."""
    import matplotlib.image
    import numpy as np

    trials = [([2.0, 1.2, 0.8, 0.5, 0.4, 0.3], [2.5, 1.5, 1.0, 0.9, 0.95, 1.1]),
              ([float("nan")], [float("nan")]),
              ([0.5, 0.4, 0.35], [0.55, 0.45, 0.5])]
    for number, (train, val) in enumerate(trials):
        reused = plot_trial_curve("s", number, train, val, tmp_path / f"reused-{number}.png")
        fresh = tmp_path / f"fresh-{number}.png"
        trial_curve_figure("s", number, train, val).savefig(fresh, dpi=90)
        assert np.array_equal(matplotlib.image.imread(reused), matplotlib.image.imread(fresh)), number
