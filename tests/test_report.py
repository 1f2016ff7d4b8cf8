"""Leaderboard exports, per-regularizer summary, repeats (mean ± std) and the HTML report."""

from __future__ import annotations

import io
import json
import re
import statistics
from html.parser import HTMLParser

import pandas as pd
import pytest

from regsweep.cli import main
from regsweep.errors import SettingsError
from regsweep.html_report import write_report
from regsweep.report import export, leaderboard, regularizer_summary, to_text


class _TableParser(HTMLParser):
    """The cells of the first <table> of an HTML text (pandas.read_html needs lxml, not installed)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._tables = 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._tables += 1
        if self._tables == 1 and tag == "tr":
            self.rows.append([])
        if self._tables == 1 and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _from_html(text: str) -> pd.DataFrame:
    parser = _TableParser()
    parser.feed(text)
    header, *rows = parser.rows
    return pd.DataFrame(rows, columns=header)


def _from_markdown(text: str) -> pd.DataFrame:
    lines = [line.strip().strip("|") for line in text.strip().splitlines()]
    header = [c.strip() for c in lines[0].split("|")]
    rows = [[c.strip() for c in line.split("|")] for line in lines[2:]]
    return pd.DataFrame(rows, columns=header)


def _read(fmt: str, text: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(io.StringIO(text))
    if fmt == "json":
        return pd.read_json(io.StringIO(text), orient="records")
    return _from_html(text) if fmt == "html" else _from_markdown(text)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "md", "html", "json"])
def test_each_format_round_trips_through_pandas_with_the_same_rows(review_study, tmp_path, fmt):
    board = leaderboard(review_study.study, state="all")
    path = tmp_path / f"board.{fmt}"
    export(board, fmt, path)
    back = _read(fmt, path.read_text())
    assert list(back.columns) == list(board.columns)
    assert [int(t) for t in back["trial"]] == list(board["trial"])
    assert list(back["state"]) == list(board["state"])
    finished = board["state"] != "fail"
    expected = board.loc[finished, "val_loss"].to_numpy(dtype=float)
    got = pd.to_numeric(back.loc[finished.to_numpy(), "val_loss"]).to_numpy(dtype=float)
    tolerance = 1e-12 if fmt in ("csv", "json") else 1e-3  # md/html show 4 significant digits
    assert got == pytest.approx(expected, rel=tolerance)


@pytest.mark.slow
def test_states_top_and_sorting(review_study):
    study = review_study.study
    finished = leaderboard(study)
    assert len(finished) == 4 and set(finished["state"]) == {"complete"}
    assert list(finished["val_loss"]) == sorted(finished["val_loss"])
    assert list(finished["rank"]) == [1, 2, 3, 4]
    failed = leaderboard(study, state="failed")
    assert len(failed) == 1 and failed["fail_reason"].iloc[0] == "test: made to fail"
    assert len(leaderboard(study, state="all")) == 5
    assert len(leaderboard(study, state="pruned")) == 0
    by_params = leaderboard(study, sort_by="n_params", ascending=False, top=2)
    assert len(by_params) == 2
    assert by_params["n_params"].iloc[0] == max(finished["n_params"])
    with pytest.raises(SettingsError, match="sort_by.*'nope'"):
        leaderboard(study, sort_by="nope")
    with pytest.raises(SettingsError, match="state"):
        leaderboard(study, state="done")


@pytest.mark.slow
def test_regularizer_summary_gives_best_median_count_per_kind(review_study):
    board = leaderboard(review_study.study)
    summary = regularizer_summary(board)
    assert summary["count"].sum() == len(board)
    for row in summary.itertuples():
        losses = board.loc[board["regularizer"] == row.regularizer, "val_loss"]
        assert row.best == losses.min() and row.median == losses.median()
        assert board.loc[board["trial"] == row.best_trial, "val_loss"].iloc[0] == row.best
    assert list(summary["best"]) == sorted(summary["best"])


@pytest.mark.slow
def test_cli_leaderboard_writes_a_file_or_stdout(review_study, tmp_path, capsys):
    out = tmp_path / "board.json"
    args = ["leaderboard", "--study", review_study.name, "--storage", review_study.url]
    assert main([*args, "--format", "json", "-o", str(out), "--top", "2"]) == 0
    assert [row["rank"] for row in json.loads(out.read_text())] == [1, 2]
    capsys.readouterr()
    assert main([*args, "--format", "csv", "--state", "failed"]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out))["state"].tolist() == ["fail"]
    assert main([*args, "--format", "md", "--summary"]) == 0
    assert "| regularizer" in capsys.readouterr().out
    assert main([*args, "--sort", "bogus"]) == 2
    assert "sort_by" in capsys.readouterr().err


def test_empty_board_summary_and_exports():
    board = pd.DataFrame(columns=["rank", "trial", "val_loss", "regularizer"])
    assert regularizer_summary(board).empty
    assert to_text(board, "csv").strip() == "rank,trial,val_loss,regularizer"
    with pytest.raises(SettingsError, match="format.*'xls'"):
        to_text(board, "xls")


@pytest.mark.slow
def test_repeats_give_mean_and_std(tmp_path):
    from review_studies import make_study

    made = make_study(tmp_path, "repeats", trials=2, repeats=3)
    for trial in made.study.trials:
        losses = trial.user_attrs["val_losses"]
        assert len(losses) == 3 and trial.user_attrs["repeats"] == 3
        assert trial.value == pytest.approx(statistics.fmean(losses))
        assert trial.user_attrs["val_loss_std"] == pytest.approx(statistics.stdev(losses))
        assert trial.user_attrs["model_val_loss"] in losses
        assert len(set(losses)) > 1  # different seeds give different runs
    board = leaderboard(made.study)
    assert list(board.columns[3:5]) == ["val_loss", "val_loss_std"]
    markdown = to_text(board, "md")
    assert "val_loss (mean ± std)" in markdown
    first = board.iloc[0]
    assert f"{first['val_loss']:.4g} ± {first['val_loss_std']:.2g}" in markdown


@pytest.mark.slow
def test_html_report_is_self_contained(review_study, tmp_path):
    path = write_report(review_study.study, tmp_path / "report.html")
    text = path.read_text()
    assert "regsweep report: review" in text
    assert len(re.findall(r'<img alt="(\w+)" src="data:image/png;base64,', text)) == 4
    assert not re.search(r'(src|href)="(https?:|/|file:)', text)  # nothing loaded from elsewhere
    for trial in leaderboard(review_study.study)["trial"]:
        assert re.search(rf"<td>{trial}</td>", text)
    assert "Search space" in text and "max_epochs" in text
    assert "Which regularizer helps" in text


@pytest.mark.slow
def test_cli_report_default_path_next_to_the_study(review_study, capsys):
    assert main(["report", "--study", review_study.name, "--storage", review_study.url, "--no-plots"]) == 0
    path = review_study.folder / review_study.name / "report.html"
    assert f"wrote {path}" in capsys.readouterr().out
    assert "<img" not in path.read_text()
