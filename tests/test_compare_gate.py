"""`bench compare A B --fail-on ...`: exit 1 on a drop beyond noise and `--tolerance` (beyond the
tolerance alone with one seed a side), on a cell ok in A and not in B, and (asked for) on a cell of A
missing in B; exit 0 otherwise; exit 2 on an unknown value or a bad tolerance.

The runs are copies of tests/fixtures/golden (see tests/test_report_golden.py) with some cells moved.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import create_app
from harness.compare import Tolerance, compare_runs, gate, lower_is_better, parse_fail_on, parse_tolerance
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
    note = "note: 1 cell with fewer than two ok seeds on a side: too few seeds to test; give --tolerance to gate on"
    assert f"{note} the drop" in done.stderr
    better = _shifted_copy(tmp_path / "up", {("r18", "full"): 0.1})
    assert _compare(GOLDEN, better, "--fail-on", "regression").exit_code == 0  # a significant gain
    assert _compare(better, GOLDEN).exit_code == 0  # without --fail-on: never 1


def _edited_copy(
    tmp_path: Path,
    status: dict[str, str],
    drop: tuple[str, ...] = (),
    top1: dict[str, float] | None = None,
    name: str = "edited",
) -> Path:
    """The golden run with some cells' status or top-1 changed and some removed (by key:
    `task-backbone-strategy-seed`)."""
    copy = tmp_path / name
    shutil.copytree(GOLDEN, copy)
    store = Store(copy)
    for result in store.results():
        stem = f"{result.task}-{result.backbone}-{result.strategy}-{result.seed}"
        data = result.to_json()
        if stem in status:
            data["status"], data["reason"] = status[stem], "RuntimeError: out of memory"
        if stem in (top1 or {}):
            data["metrics"] = {"top1": (top1 or {})[stem]}
        if stem in status or stem in (top1 or {}):
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
        for seed in range(3):  # each cell of A that B lacks, not the row once
            assert f"missing: cls / r18 / lora / seed {seed}: in A (cell cls-r18-lora-{seed}), not in B" in done.stderr
        assert done.stderr.splitlines()[-1] == "3 cells of A missing in B: cls / r18 / lora (seeds 0, 1, 2)"
    assert _compare(fewer, GOLDEN, "--fail-on", "missing").exit_code == 0  # new cells in B never fail


def test_both_kinds_in_one_summary_line(tmp_path: Path) -> None:
    worse = _shifted_copy(tmp_path, {("r18", "full"): -0.1})
    (worse / "cells" / "cls-r18-lora-0.json").unlink()  # a seed fewer: still in B, and within noise
    frame = compare_runs(GOLDEN, worse)
    failures = gate(frame, parse_fail_on(["regression,missing"]))
    # lora: 2 ok seeds, within noise, but its seed 0 is missing
    assert [(f.kind, f.name) for f in failures] == [
        ("drop", "cls / r18 / full"),
        ("missing", "cls / r18 / lora / seed 0"),
    ]
    done = _compare(GOLDEN, worse, "--fail-on", "missing,regression")
    assert done.exit_code == 1
    assert done.stderr.splitlines()[-1] == (
        "1 regression beyond noise (alpha 0.05): cls / r18 / full; 1 cell of A missing in B: cls / r18 / lora (seed 0)"
    )


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


# --- one seed a side, and --tolerance ----------------------------------------------------------------

#: every golden cell but seed 0's
LATER_SEEDS = tuple(path.stem for path in (GOLDEN / "cells").glob("*.json") if not path.stem.endswith("-0"))


def _one_seed(tmp_path: Path, name: str, full: float) -> Path:
    """The golden run with seed 0 only, as a CI gate runs it, and r18 full's top-1 set to `full`."""
    return _edited_copy(tmp_path, {}, drop=LATER_SEEDS, top1={"cls-r18-full-0": full}, name=name)


def test_one_seed_a_side_gates_on_the_drop_only_with_a_tolerance(tmp_path: Path) -> None:
    main, pr = _one_seed(tmp_path, "main", 0.22), _one_seed(tmp_path, "pr", 0.0)
    assert set(compare_runs(main, pr)["n_a"].dropna()) <= {0, 1}  # one seed a side: nothing can be tested
    untested = _compare(main, pr, "--fail-on", "regression")
    assert untested.exit_code == 0, untested.stderr  # no tolerance: as before, a note and no gate
    assert "give --tolerance to gate on the drop" in untested.stderr
    done = _compare(main, pr, "--fail-on", "regression", "--tolerance", "0.01")
    assert done.exit_code == 1, done.stderr
    assert "note: 9 cells with fewer than two ok seeds on a side: gated on the drop alone (tolerance 0.01)" in (
        done.stderr
    )
    assert (
        "regression: cls / r18 / full: top1 0.2200 -> 0.0000 (-0.2200; 1 vs 1 ok seeds, too few to test; "
        "drop 0.2200 > tolerance 0.0100)"
    ) in done.stderr
    assert (
        done.stderr.splitlines()[-1] == "1 regression beyond tolerance 0.01 (too few seeds to test): cls / r18 / full"
    )
    # the unchanged cells (a drop of 0) pass even at a zero tolerance; a gain never fails
    assert _compare(main, pr, "--fail-on", "regression", "--tolerance", "0").stderr.count("regression:") == 1
    assert _compare(pr, main, "--fail-on", "regression", "--tolerance", "0").exit_code == 0


@pytest.mark.parametrize(
    ("b", "tolerance", "fails"),
    [
        (0.215, "0.01", False),  # a drop of 0.005 within 0.01
        (0.20, "0.02", False),  # exactly the tolerance (0.22 - 0.20 is 0.0200000000000000018 in floats) passes
        (0.19, "0.02", True),
        (0.215, "2%", True),  # 0.005 > 2% of 0.22 = 0.0044
        (0.215, "3%", False),  # 0.005 <= 0.0066
    ],
)
def test_a_drop_within_the_tolerance_passes(tmp_path: Path, b: float, tolerance: str, fails: bool) -> None:
    main, pr = _one_seed(tmp_path, "main", 0.22), _one_seed(tmp_path, "pr", b)
    done = _compare(main, pr, "--fail-on", "regression", "--tolerance", tolerance)
    assert done.exit_code == (1 if fails else 0), done.stderr
    assert ("regression: cls / r18 / full" in done.stderr) == fails


def test_a_relative_tolerance_is_a_share_of_as_value(tmp_path: Path) -> None:
    main, pr = _one_seed(tmp_path, "main", 0.22), _one_seed(tmp_path, "pr", 0.215)
    done = _compare(main, pr, "--fail-on", "regression", "--tolerance", "2%")
    assert "drop 0.0050 > tolerance 0.0044 (2% of A's value)" in done.stderr
    assert done.stderr.splitlines()[-1] == (
        "1 regression beyond tolerance 2% of A's value (too few seeds to test): cls / r18 / full"
    )
    frame = compare_runs(main, pr, tolerance=Tolerance(0.02, relative=True))
    row = frame[(frame["backbone"] == "r18") & (frame["strategy"] == "full")].iloc[0]
    assert row["tolerance"] == pytest.approx(0.0044) and row["worse_by"] == pytest.approx(0.005) and row["regressed"]


def test_with_several_seeds_a_drop_must_be_beyond_noise_and_tolerance(tmp_path: Path) -> None:
    # full: 0.72 -> 0.62, significant; bitfit: the same drop, within its noise
    worse = _shifted_copy(tmp_path, {("r18", "full"): -0.1, ("r18", "bitfit"): -0.1})
    within = _compare(GOLDEN, worse, "--fail-on", "regression", "--tolerance", "0.15")
    assert within.exit_code == 0, within.stderr  # significant, but within the tolerance
    done = _compare(GOLDEN, worse, "--fail-on", "regression", "--tolerance", "0.05")
    assert done.exit_code == 1, done.stderr
    assert "Holm-corrected p=" in done.stderr and "drop 0.1000 > tolerance 0.0500)" in done.stderr
    assert "bitfit" not in done.stderr  # beyond the tolerance, but not beyond noise
    assert done.stderr.splitlines()[-1] == (
        "1 regression beyond noise (alpha 0.05) and tolerance 0.05: cls / r18 / full"
    )
    # no tolerance given: beyond noise is enough, as before
    assert "drop 0.1000 > tolerance 0 (none given)" in _compare(GOLDEN, worse, "--fail-on", "regression").stderr


def test_the_table_shows_the_tolerance_and_each_rows_drop_against_it(tmp_path: Path) -> None:
    main, pr = _one_seed(tmp_path, "main", 0.22), _one_seed(tmp_path, "pr", 0.0)
    table = runner.invoke(app, ["compare", str(main), str(pr), "--tolerance", "0.01"]).stdout
    assert "worse by vs tolerance" in table.splitlines()[0]
    full = next(line for line in table.splitlines() if "| full " in line and "| r18 " in line)
    assert "0.2200 > 0.0100: regressed" in full
    worse = _shifted_copy(tmp_path, {("r18", "bitfit"): -0.1})  # several seeds: beyond the tolerance, not noise
    bitfit = next(line for line in runner.invoke(app, ["compare", str(GOLDEN), str(worse), "--tolerance", "1%"])
                  .stdout.splitlines() if "| bitfit " in line)  # fmt: skip
    assert "0.1000 > 0.0060: within noise" in bitfit
    assert "Tolerance 0.01: 1 of " in table and "cells regressed" in table
    assert "worse by vs tolerance" not in runner.invoke(app, ["compare", str(main), str(pr)]).stdout


def _top1_lower_is_better(*runs: Path) -> None:
    """Record top-1 as lower-is-better in every classification cell, as the runner records a task's
    `Task.lower_is_better` (ECE): as if top-1 were an error rate."""
    for run in runs:
        for path in (run / "cells").glob("cls-*.json"):
            data = json.loads(path.read_text())
            path.write_text(json.dumps({**data, "lower_is_better": ["top1"]}))


def test_a_lower_is_better_metric_regresses_when_it_rises(tmp_path: Path) -> None:
    main, pr = _one_seed(tmp_path, "main", 0.22), _one_seed(tmp_path, "pr", 0.25)
    _top1_lower_is_better(main, pr)
    done = _compare(main, pr, "--fail-on", "regression", "--tolerance", "0.01")
    assert done.exit_code == 1, done.stderr
    assert "top1 0.2200 -> 0.2500 (+0.0300; 1 vs 1 ok seeds, too few to test; rise 0.0300 > tolerance 0.0100)" in (
        done.stderr
    )
    assert _compare(pr, main, "--fail-on", "regression", "--tolerance", "0.01").exit_code == 0  # a fall: a gain
    worse, better = (
        _shifted_copy(tmp_path / "down", {("r18", "full"): -0.1}),
        _shifted_copy(tmp_path, {("r18", "full"): 0.1}),
    )
    _top1_lower_is_better(worse, better)
    assert "rise 0.2000 > tolerance 0" in _compare(worse, better, "--fail-on", "regression").stderr  # several seeds
    assert _compare(better, worse, "--fail-on", "regression").exit_code == 0


def test_the_direction_of_results_without_a_record_comes_from_the_task() -> None:
    assert lower_is_better("classification", "ece")
    assert not lower_is_better("classification", "top1")
    assert not lower_is_better("a-kind-no-plugin-provides", "ece")  # results from elsewhere: higher is better


# --- --fail-on missing counts cells --------------------------------------------------------------------


def test_one_seeds_cell_file_deleted_from_b_is_missing(tmp_path: Path) -> None:
    fewer = tmp_path / "fewer"
    shutil.copytree(GOLDEN, fewer)
    (fewer / "cells" / "cls-r18-full-1.json").unlink()  # the row is still there, with two seeds
    done = _compare(GOLDEN, fewer, "--fail-on", "missing")
    assert done.exit_code == 1, done.stderr
    assert done.stderr.splitlines() == [
        "missing: cls / r18 / full / seed 1: in A (cell cls-r18-full-1), not in B",
        "1 cell of A missing in B: cls / r18 / full (seed 1)",
    ]
    assert _compare(GOLDEN, fewer, "--fail-on", "regression").exit_code == 0  # two ok seeds left, within noise
    assert _compare(fewer, GOLDEN, "--fail-on", "missing").exit_code == 0  # an extra seed in B never fails


def test_the_same_cell_under_another_key_is_not_missing(tmp_path: Path) -> None:
    """A changed setting or harness version gives a cell another key; its labels (task, backbone,
    strategy, setting, seed) say it is the same cell."""
    rekeyed = tmp_path / "rekeyed"
    shutil.copytree(GOLDEN, rekeyed)
    store = Store(rekeyed)
    old = store.load("cls-r18-full-1")
    assert old is not None
    data = old.to_json()
    data["key"] = "0123456789abcdef"
    store.save(CellResult.from_json(data))
    store.cell_path("cls-r18-full-1").unlink()
    manifest = json.loads((rekeyed / "manifest.json").read_text())
    manifest["cells"] = ["0123456789abcdef" if key == "cls-r18-full-1" else key for key in manifest["cells"]]
    (rekeyed / "manifest.json").write_text(json.dumps(manifest))
    done = _compare(GOLDEN, rekeyed, "--fail-on", "missing,regression")
    assert done.exit_code == 0, done.stderr


# --- bad --tolerance ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("abc", "is not a number"),
        ("-1", "is negative"),
        ("-2%", "is negative"),
        ("150%", "is more than A's whole value"),
        ("nan", "is not a finite number"),
        ("", "no value given"),
        ("%", "no value given"),
    ],
)
def test_a_bad_tolerance_is_one_line_and_exit_2(value: str, why: str) -> None:
    done = _compare(GOLDEN, GOLDEN, "--fail-on", "regression", "--tolerance", value)
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith("error: --tolerance: ") and why in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_an_amount_as_wide_as_the_metrics_range_is_refused(tmp_path: Path) -> None:
    done = _compare(GOLDEN, GOLDEN, "--fail-on", "regression", "--tolerance", "2")  # meant 2%
    assert done.exit_code == 2
    assert done.stderr == (
        "error: --tolerance: 2 is not below the range of top1 ([0, 1]), so no drop could exceed it; "
        "for 2 points of top1 give 0.02, for 2% of A's value give 2%\n"
    )
    assert done.stdout == ""


def test_parse_tolerance() -> None:
    assert parse_tolerance(None) is None
    assert parse_tolerance("0.01") == Tolerance(0.01)
    assert parse_tolerance(" 2% ") == Tolerance(0.02, relative=True)
    relative = parse_tolerance("2%")
    assert relative is not None and relative.of(0.5) == pytest.approx(0.01) and relative.of(-0.5) == pytest.approx(0.01)
    assert str(parse_tolerance("2%")) == "2% of A's value"
