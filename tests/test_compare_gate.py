"""`bench compare A B --fail-on ...`: exit 1 on a drop beyond noise, on a cell ok in A and not in B,
and (asked for) on a cell of A missing in B; exit 0 otherwise; exit 2 on an unknown value.

The runs are copies of tests/fixtures/golden (see tests/test_report_golden.py) with some cells moved.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import create_app
from harness.compare import compare_runs, gate, parse_fail_on
from harness.errors import BenchError
from harness.result import CellResult
from harness.store import Store
from tests.test_report_golden import GOLDEN, _shifted_copy

runner = CliRunner()
app = create_app()


def _compare(a: Path, b: Path, *options: str):
    return runner.invoke(app, ["compare", str(a), str(b), "-f", "csv", *options])


def test_a_drop_beyond_noise_fails_and_names_the_cell(tmp_path: Path) -> None:
    # full: 0.72 -> 0.62 over three seeds (s = 0.02): p = 0.0036; bitfit: the same drop, within its noise
    worse = _shifted_copy(tmp_path, {("r18", "full"): -0.1, ("r18", "bitfit"): -0.1})
    done = _compare(GOLDEN, worse, "--fail-on", "regression")
    assert done.exit_code == 1, done.output
    lines = done.stderr.splitlines()
    assert "regression: cls / r18 / full: top1 0.7200 -> 0.6200 (-0.1000 [" in done.stderr
    assert lines[-1] == "1 regression beyond noise (alpha 0.05): cls / r18 / full"
    assert "bitfit" not in done.stderr
    assert "task,backbone,strategy" in done.stdout  # the comparison itself is still written
    # the same drop at a stricter alpha is within noise
    assert _compare(GOLDEN, worse, "--fail-on", "regression", "--alpha", "0.001").exit_code == 0


def test_changes_within_noise_or_upward_pass(tmp_path: Path) -> None:
    noisy = _shifted_copy(tmp_path, {("r18", "bitfit"): -0.1, ("r18", "probe"): -0.001})
    done = _compare(GOLDEN, noisy, "--fail-on", "regression")
    assert done.exit_code == 0, done.stderr
    assert "regression" not in done.stderr
    assert "note: 1 cell with fewer than two ok seeds on a side: not tested for a drop" in done.stderr
    better = _shifted_copy(tmp_path / "up", {("r18", "full"): 0.1})
    assert _compare(GOLDEN, better, "--fail-on", "regression").exit_code == 0  # a significant gain
    assert _compare(better, GOLDEN).exit_code == 0  # without --fail-on: never 1


def _edited_copy(tmp_path: Path, status: dict[str, str], drop: tuple[str, ...] = ()) -> Path:
    """The golden run with some cells' status changed and some removed (by key: `task-backbone-strategy-seed`)."""
    copy = tmp_path / "edited"
    shutil.copytree(GOLDEN, copy)
    store = Store(copy)
    for result in store.results():
        stem = f"{result.task}-{result.backbone}-{result.strategy}-{result.seed}"
        if stem in status:
            data = result.to_json()
            data["status"], data["reason"] = status[stem], "RuntimeError: out of memory"
            store.save(CellResult.from_json(data))
    for stem in drop:
        (copy / "cells" / f"{stem}.json").unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["cells"] = [key for key in manifest["cells"] if key not in drop]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_a_cell_ok_in_a_and_not_in_b_is_a_regression(tmp_path: Path) -> None:
    broken = _edited_copy(tmp_path, {"cls-mnv3-full-1": "failed"})
    done = _compare(GOLDEN, broken, "--fail-on", "regression")
    assert done.exit_code == 1, done.stderr
    assert "regression: cls / mnv3 / full: ok in A, not in B (2 ok, 1 failed: RuntimeError: out of memory)" in (
        done.stderr
    )
    assert done.stderr.splitlines()[-1] == "1 cell ok in A and not in B: cls / mnv3 / full"
    # the reverse (fixed in B) and a cell already not ok in A (distill: three failed) do not fail
    assert _compare(broken, GOLDEN, "--fail-on", "regression").exit_code == 0


def test_missing_cells_fail_only_when_asked(tmp_path: Path) -> None:
    lora = tuple(f"cls-r18-lora-{seed}" for seed in range(3))
    fewer = _edited_copy(tmp_path, {}, drop=lora)
    frame = compare_runs(GOLDEN, fewer)
    assert set(frame.loc[frame["strategy"] == "lora", "verdict"]) == {"only in A"}
    assert _compare(GOLDEN, fewer, "--fail-on", "regression").exit_code == 0
    for options in (["--fail-on", "regression,missing"], ["--fail-on", "regression", "--fail-on", "missing"]):
        done = _compare(GOLDEN, fewer, *options)
        assert done.exit_code == 1, done.stderr
        assert "missing: cls / r18 / lora: in A, not in B" in done.stderr
        assert done.stderr.splitlines()[-1] == "1 cell of A missing in B: cls / r18 / lora"
    assert _compare(fewer, GOLDEN, "--fail-on", "missing").exit_code == 0  # new cells in B never fail


def test_both_kinds_in_one_summary_line(tmp_path: Path) -> None:
    worse = _shifted_copy(tmp_path, {("r18", "full"): -0.1})
    (worse / "cells" / "cls-r18-lora-0.json").unlink()  # a seed fewer: still in B, and within noise
    frame = compare_runs(GOLDEN, worse)
    failures = gate(frame, parse_fail_on(["regression,missing"]))
    assert [(f.kind, f.cell) for f in failures] == [("drop", "cls / r18 / full")]  # lora: 2 ok seeds, noise
    done = _compare(GOLDEN, worse, "--fail-on", "missing,regression")
    assert done.exit_code == 1
    assert done.stderr.splitlines()[-1] == "1 regression beyond noise (alpha 0.05): cls / r18 / full"


@pytest.mark.parametrize("value", ["regresion", "regression,everything", "", ","])
def test_an_unknown_fail_on_value_is_one_line_and_exit_2(value: str) -> None:
    done = _compare(GOLDEN, GOLDEN, "--fail-on", value)
    assert done.exit_code == 2
    bad = value.split(",")[-1]
    if bad:
        assert done.stderr == f"error: --fail-on: unknown value {bad!r}; allowed: regression, missing\n"
    else:  # an empty `--fail-on "$GATE"` in a CI script must not pass as "no gate"
        assert done.stderr == "error: --fail-on: no value given; allowed: regression, missing\n"
    assert done.stdout == ""  # refused before reading the runs


def test_parse_fail_on() -> None:
    assert parse_fail_on(None) == frozenset()
    assert parse_fail_on(["regression, missing", "regression"]) == {"regression", "missing"}
    with pytest.raises(BenchError, match="--fail-on"):
        parse_fail_on(["Regression"])


def test_compare_pairs_shared_seeds_and_holm_corrects_over_the_cells(tmp_path: Path) -> None:
    """The per-cell test is scipy's paired t-test over the seeds both runs have; the p-values of all
    tested cells are Holm-corrected together, and the verdict follows the corrected p."""
    from scipy import stats

    from harness.stats import holm
    from harness.store import Store

    other = _shifted_copy(tmp_path, {("r18", "full"): 0.1, ("r18", "bitfit"): 0.1})
    frame = compare_runs(GOLDEN, other)
    values = {}
    for name, path in (("a", GOLDEN), ("b", other)):
        cells = [r for r in Store(path).results() if (r.task, r.backbone, r.strategy) == ("cls", "r18", "full")]
        values[name] = [r.metrics["top1"] for r in sorted(cells, key=lambda r: r.seed)]
    full = frame.set_index(["task", "backbone", "strategy"]).loc[("cls", "r18", "full")]
    assert full["test"] == "paired"
    assert full["p_value"] == pytest.approx(stats.ttest_rel(values["b"], values["a"]).pvalue)
    tested = frame[frame["test"] != ""]
    assert tested["p_holm"].tolist() == pytest.approx(holm(tested["p_value"].tolist()))
    assert (tested["significant"] == (tested["p_holm"] < 0.05)).all()
    assert full["p_holm"] > full["p_value"]  # eight cells tested at once
