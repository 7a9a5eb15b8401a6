"""Golden tests: the report of tests/fixtures/golden against numbers checked by hand and against scipy.

The fixture (written by tests/fixtures/make_golden.py) has, on task `cls` (top1, baseline
`scratch`), backbone r18: scratch 0.50/0.52/0.54 (360 s), full 0.70/0.74/0.72 (720 s), probe
0.60/0.66/0.63 (36 s), lora 0.49/0.53/0.51 (400 s), bitfit 0.40/0.80/0.60 (180 s), partial one ok
seed 0.68 (540 s) plus a diverged and a failed one, distill three failed; backbone mnv3: full
0.75/0.77/0.79 (1800 s) and no baseline. Task `seg` (miou): r18 scratch 0.30/0.32/0.34 on the CPU
(3600 s), r18 full 0.40/0.42/0.44 on a GPU (360 s), and a backbone whose cells were all skipped.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from harness.cli import create_app
from harness.report import build_report
from harness.result import CellResult
from harness.store import Store

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
runner = CliRunner()
app = create_app()

# Student t quantiles from a printed t table (two-sided 95%): df 2 -> 4.303, df 4 -> 2.776
T_2, T_4 = 4.303, 2.776


@pytest.fixture(scope="module")
def report():
    return build_report(GOLDEN)


def rows_of(report, task: str) -> pd.DataFrame:
    table = next(t for t in report.tables if t.task == task)
    return table.rows.set_index(["backbone", "strategy"])


def test_means_and_student_t_intervals_by_hand(report) -> None:
    cls = rows_of(report, "cls")
    full = cls.loc[("r18", "full")]
    assert full["n"] == 3 and full["mean"] == pytest.approx(0.72)
    # s = 0.02, half-width = t(0.975, 2) * 0.02 / sqrt(3) = 4.303 * 0.011547 = 0.04968
    assert full["ci_half_width"] == pytest.approx(T_2 * 0.02 / math.sqrt(3), rel=1e-3)
    assert full["ci_low"] == pytest.approx(0.72 - 0.04968, abs=1e-4)
    # probe: s = 0.03 -> half-width 4.303 * 0.03 / sqrt(3) = 0.07453
    assert cls.loc[("r18", "probe"), "ci_half_width"] == pytest.approx(0.07453, rel=1e-3)
    partial = cls.loc[("r18", "partial")]  # one ok seed: a mean, no interval
    assert partial["n"] == 1 and partial["mean"] == pytest.approx(0.68) and math.isnan(partial["ci_half_width"])


def test_gains_paired_over_shared_seeds_and_holm_corrected(report) -> None:
    cls = rows_of(report, "cls")
    full = cls.loc[("r18", "full")]
    # full - scratch per seed: 0.20, 0.22, 0.18 -> mean 0.20, s 0.02, se 0.011547, df 2, t = 17.32
    assert full["gain"] == pytest.approx(0.20) and full["gain_test"] == "paired t over 3 seeds"
    assert full["gain_ci_low"] == pytest.approx(0.20 - T_2 * 0.011547, rel=1e-3)
    assert full["gain_ci_high"] == pytest.approx(0.20 + T_2 * 0.011547, rel=1e-3)
    assert full["p_value"] == pytest.approx(2 * stats.t.sf(0.20 / 0.011547, 2), rel=1e-3)
    scratch = [0.50, 0.52, 0.54]
    tested = {"full": [0.70, 0.74, 0.72], "probe": [0.60, 0.66, 0.63], "lora": [0.49, 0.53, 0.51],
              "bitfit": [0.40, 0.80, 0.60]}  # fmt: skip
    raw = {}
    for strategy, values in tested.items():  # seeds 0, 1, 2 on both sides: paired, as scipy's ttest_rel
        row = cls.loc[("r18", strategy)]
        reference = stats.ttest_rel(values, scratch)
        assert row["p_value"] == pytest.approx(reference.pvalue, rel=1e-9)
        ci = reference.confidence_interval(0.95)
        assert (row["gain_ci_low"], row["gain_ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
        raw[strategy] = reference.pvalue
    # Holm over the table's 4 tests: p sorted full < probe < lora < bitfit, multiplied by 4, 3, 2, 1, running max
    full_p, probe_p = 4 * raw["full"], max(4 * raw["full"], 3 * raw["probe"])
    lora_p = max(probe_p, 2 * raw["lora"])
    expected = {"full": full_p, "probe": probe_p, "lora": lora_p, "bitfit": min(1.0, max(lora_p, raw["bitfit"]))}
    for strategy, p_holm in expected.items():
        assert cls.loc[("r18", strategy), "p_holm"] == pytest.approx(p_holm, rel=1e-9)
    # probe: p 0.019 alone would pass 0.05; corrected over four gains (0.056) it does not
    assert raw["probe"] < 0.05 < cls.loc[("r18", "probe"), "p_holm"]
    assert [cls.loc[("r18", s), "significant"] for s in tested] == [True, False, False, False]
    assert cls.loc[("r18", "scratch"), "gain"] == 0 and cls.loc[("r18", "scratch"), "significant"] is None
    partial = cls.loc[("r18", "partial")]  # one seed: a gain, but no test, and not one of Holm's m
    assert partial["gain"] == pytest.approx(0.16) and partial["significant"] is None
    assert math.isnan(partial["p_value"]) and math.isnan(partial["p_holm"]) and partial["gain_test"] == ""
    notes = next(t for t in report.tables if t.task == "cls").notes
    assert (
        "gains tested with a paired t-test over 3 shared seeds (4 gains); p-values Holm-corrected over the "
        "table's 4 gains tested, significant when the corrected p < 0.05"
    ) in notes


def test_roi_columns(report) -> None:
    cls = rows_of(report, "cls")
    full, probe = cls.loc[("r18", "full")], cls.loc[("r18", "probe")]
    assert full["train_device_hours"] == pytest.approx(0.2)
    assert full["roi_per_device_hour"] == pytest.approx(0.20 / 0.2)
    assert full["roi_per_million_params"] == pytest.approx(0.20 / (1000 / 1e6))
    assert probe["roi_per_device_hour"] == pytest.approx(0.11 / 0.01)
    assert probe["trainable_pct"] == pytest.approx(0.01)


def test_pareto_flags(report) -> None:
    cls = rows_of(report, "cls")
    # (hours, top1): probe (0.01, .63) full (0.2, .72) partial (0.15, .68) mnv3 full (0.5, .77) are on the
    # frontier; bitfit (0.05, .60), scratch (0.1, .52) and lora (0.111, .51) cost more than probe for less
    on = {("r18", "probe"), ("r18", "full"), ("r18", "partial"), ("mnv3", "full")}
    for index, flag in cls["pareto"].items():
        assert flag == (index in on), index
    seg = rows_of(report, "seg")  # two devices: each row is alone on its device's frontier
    assert seg.loc[("r18", "scratch"), "pareto"] and seg.loc[("r18", "full"), "pareto"]
    seg_table = next(t for t in report.tables if t.task == "seg")
    assert any(n.startswith("costs were measured on 2 devices") for n in seg_table.notes)
    assert not seg.loc[("vit", "full"), "pareto"]


def test_failed_diverged_skipped_and_missing_baseline_are_shown(report) -> None:
    cls, seg = rows_of(report, "cls"), rows_of(report, "seg")
    assert cls.loc[("r18", "distill"), "status"] == "3 failed: RuntimeError: CUDA out of memory"
    assert cls.loc[("r18", "distill"), "n"] == 0
    assert cls.loc[("r18", "partial"), "status"] == "1 ok, 1 diverged, 1 failed: loss is nan at step 12"
    assert seg.loc[("vit", "full"), "status"] == "3 skipped: vit_b_16 has no feature pyramid"
    assert math.isnan(cls.loc[("mnv3", "full"), "gain"])
    notes = next(t for t in report.tables if t.task == "cls").notes
    assert "no ok 'scratch' result for backbone mnv3: its gains are not computed" in notes


def test_summary_ranks_and_gains(report) -> None:
    summary = report.summary.set_index(["strategy", "kind"])
    # r18 on cls: full .72 > partial .68 > probe .63 > bitfit .60 > scratch .52 > lora .51; mnv3 has one row
    for strategy, rank in [("full", 1), ("partial", 2), ("probe", 3), ("bitfit", 4), ("scratch", 5), ("lora", 6)]:
        assert summary.loc[(strategy, "classification"), "mean_rank"] == rank
        assert summary.loc[(strategy, "classification"), "groups"] == 1
    assert summary.loc[("full", "classification"), "mean_gain"] == pytest.approx(0.20)
    assert summary.loc[("full", "segmentation"), "mean_rank"] == 1
    assert summary.loc[("scratch", "segmentation"), "mean_rank"] == 2
    assert summary.loc[("full", "segmentation"), "significant_gains"] == 1
    assert ("distill", "classification") not in summary.index  # no ok seed: no rank


def test_markdown_report_golden_lines() -> None:
    text = runner.invoke(app, ["report", str(GOLDEN)]).output
    assert (
        "| r18 | full | 0.7200 [0.6703, 0.7697] (3) | +0.2000 [+0.1503, +0.2497] | yes (p=0.013) | 0.2 ± 0 | 1.4 | "
        "1024 | 1.00k (1%) | - | +1 | +200 | ★ | ok |"
    ) in text
    assert "| r18 | distill | - | - | - | - | - | - | - (-%) | - | - | - |  | 3 failed: RuntimeError" in text
    assert "| full | 1.00 (1) | +0.2000 | 1 | 1.00 (1) | +0.1000 | 1 | 1.00 |" in text
    significant = "**significant**: the gain's two-sided p-value, Holm-corrected over all gains of the table, is below"
    assert f"{significant} 0.05" in " ".join(text.split())  # prose is wrapped; the words are the same
    prose = [line for line in text.splitlines() if not line.startswith("|")]
    assert max(len(line) for line in prose) <= 100  # only a table row may be longer: markdown keeps one per line


def test_options_filter_sort_and_threshold() -> None:
    by_gain = build_report(GOLDEN, tasks=("cls",), backbones=("r18",), sort="gain").tables[0].rows
    assert list(by_gain["strategy"]) == ["full", "partial", "probe", "bitfit", "scratch", "lora", "distill"]
    cheap = build_report(GOLDEN, sort="cost", tasks=("cls",)).tables[0].rows
    assert list(cheap["strategy"])[:2] == ["probe", "bitfit"]
    only = build_report(GOLDEN, strategies=("probe",)).tables[0].rows  # gains still against scratch
    assert list(only["strategy"]) == ["probe"] and only["gain"].iloc[0] == pytest.approx(0.11)
    assert only["pareto"].iloc[0]
    strict = rows_of(build_report(GOLDEN, alpha=0.01), "cls")  # full's Holm p is 0.013: significant at 0.05 only
    assert strict.loc[("r18", "full"), "significant"] is False
    text = runner.invoke(app, ["report", str(GOLDEN), "--alpha", "0.01"]).output
    assert "below 0.01" in text and "corrected p < 0.01" in text
    bad = runner.invoke(app, ["report", str(GOLDEN), "--task", "nope"])
    assert bad.exit_code == 2 and "--task: unknown task 'nope'; allowed: cls, seg" in bad.output
    bad = runner.invoke(app, ["report", str(GOLDEN), "--sort", "luck"])
    assert bad.exit_code == 2 and "--sort: unknown order 'luck'; allowed: plan, metric, gain, roi, cost" in bad.output


def test_csv_and_json_parse_back_to_the_same_numbers(report) -> None:
    frame = pd.read_csv(io.StringIO(runner.invoke(app, ["report", str(GOLDEN), "-f", "csv"]).output))
    assert len(frame) == 11
    full = frame[(frame["task"] == "cls") & (frame["backbone"] == "r18") & (frame["strategy"] == "full")].iloc[0]
    assert full["gain_ci_low"] == pytest.approx(rows_of(report, "cls").loc[("r18", "full"), "gain_ci_low"])
    assert full["pareto"] and full["significant"]
    document = json.loads(runner.invoke(app, ["report", str(GOLDEN), "-f", "json"]).output)
    assert document["schema"] == "bench.report/2" and document["alpha"] == 0.05
    cls = document["tasks"][0]
    assert cls["task"] == "cls" and cls["metric"] == "top1" and cls["baseline"] == "scratch"
    row = next(r for r in cls["rows"] if r["strategy"] == "full" and r["backbone"] == "r18")
    assert row["seed_values"] == [0.70, 0.74, 0.72] and row["p_value"] == pytest.approx(0.003317, rel=1e-3)
    distill = next(r for r in cls["rows"] if r["strategy"] == "distill")
    assert distill["mean"] is None and distill["n"] == 0
    assert {s["strategy"] for s in document["summary"]} == {"full", "partial", "probe", "bitfit", "scratch", "lora"}
    assert "gain" in document["definitions"]
    pd.json_normalize(document["tasks"], "rows", ["task"])  # loads as one frame


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "link", "img") or any(k in ("src", "href") for k, _ in attrs):
            self.external.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None


def test_html_is_one_self_contained_file_with_every_table() -> None:
    text = runner.invoke(app, ["report", str(GOLDEN), "-f", "html"]).output
    parser = _Tables()
    parser.feed(text)
    assert not parser.external  # no script, stylesheet or image to fetch
    cls, seg, summary = parser.tables
    assert len(cls) == 1 + 8 and len(seg) == 1 + 3 and len(summary) == 1 + 6
    assert all(len(row) == len(cls[0]) for row in cls)
    assert cls[2][:3] == ["r18", "full", "0.7200 [0.6703, 0.7697] (3)"]
    assert '<tr class="pareto">' in text and "Definitions" in text


def test_html_tables_fit_a_1280_pixel_window() -> None:
    """The layout rule: cells wrap at spaces only, so each table's narrowest width (the sum of its
    columns' longest words) fits the window, and every table scrolls in its own box if it ever must."""
    from bench_plugins.reporters.html import BODY_MARGIN_PX, STYLE, WINDOW_PX, narrowest_width_px

    text = runner.invoke(app, ["report", str(GOLDEN), "-f", "html"]).output
    parser = _Tables()
    parser.feed(text)
    assert "white-space: nowrap" not in STYLE and "position: sticky" in STYLE
    assert text.count('<div class="table-box"><table>') == text.count("<table>") == len(parser.tables)
    for header, *rows in parser.tables:
        assert narrowest_width_px(header, rows) <= WINDOW_PX - 2 * BODY_MARGIN_PX - 20  # 20 px: a scroll bar


def test_latex_is_booktabs_and_compiles_when_tex_is_installed(tmp_path: Path) -> None:
    text = runner.invoke(app, ["report", str(GOLDEN), "-f", "latex"]).output
    assert text.count(r"\toprule") == text.count(r"\bottomrule") == 3 and r"\usepackage{booktabs}" in text
    assert text.count(r"\begin{") == text.count(r"\end{")
    body = text.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    header = text.split(r"\toprule")[1].split(r"\midrule")[0].strip()
    columns = header.count(" & ") + 1
    assert all(line.count(" & ") + 1 == columns for line in body)
    assert r"0.7200 [0.6703, 0.7697] (3)" in text and r"$\star$" in text
    engine = shutil.which("pdflatex")
    if engine is None:
        pytest.skip("no TeX engine installed: checked structurally only")
    (tmp_path / "report.tex").write_text(text)
    done = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "report.pdf").stat().st_size > 1000


def test_plots_are_written_and_not_empty(tmp_path: Path) -> None:
    from matplotlib.image import imread

    done = runner.invoke(app, ["plot", str(GOLDEN), "-o", str(tmp_path)])
    assert done.exit_code == 0, done.output
    names = sorted(p.name for p in tmp_path.iterdir())
    stems = ["cls-cost", "cls-curves", "gains-heatmap", "seg-cost", "seg-curves"]
    assert names == sorted(f"{s}.{fmt}" for s in stems for fmt in ("pdf", "png"))
    for path in tmp_path.glob("*.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = imread(path)
        assert min(pixels.shape[:2]) > 300
        assert pixels[..., :3].std() > 0.05  # drawn on, not a blank canvas
    for path in tmp_path.glob("*.pdf"):
        assert path.read_bytes()[:5] == b"%PDF-"


def test_plot_formats_and_dpi(tmp_path: Path) -> None:
    from matplotlib.image import imread

    low, high = tmp_path / "low", tmp_path / "high"
    assert runner.invoke(app, ["plot", str(GOLDEN), "-o", str(low), "-f", "png", "--dpi", "50"]).exit_code == 0
    done = runner.invoke(app, ["plot", str(GOLDEN), "-o", str(high), "-f", "png,svg", "--dpi", "100"])
    assert done.exit_code == 0, done.output
    assert (high / "gains-heatmap.svg").read_text().lstrip().startswith("<?xml")
    assert not list(low.glob("*.svg")) and not list(low.glob("*.pdf"))
    small, large = imread(low / "cls-cost.png"), imread(high / "cls-cost.png")
    assert abs(large.shape[1] / small.shape[1] - 2.0) < 0.05  # pixels scale with the dpi
    bad = runner.invoke(app, ["plot", str(GOLDEN), "-o", str(tmp_path / "x"), "-f", "jpeg"])
    assert bad.exit_code == 2 and "jpeg" in bad.output and "png, pdf, svg" in bad.output


def test_gains_heatmap_leaves_out_the_baseline_row_and_marks_significance(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from harness.plots import gains_heatmap
    from harness.report import build_report

    report = build_report(GOLDEN)
    captured: list[list[str]] = []
    original = Axes.set_yticks

    def spy(self, ticks, labels=None, **kw):  # type: ignore[no-untyped-def]
        captured.append([str(label) for label in (list(labels) if labels is not None else [])])
        return original(self, ticks, labels, **kw)

    texts: list[str] = []
    original_text = Axes.text

    def text_spy(self, x, y, s, *a, **kw):  # type: ignore[no-untyped-def]
        texts.append(str(s))
        return original_text(self, x, y, s, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Axes, "set_yticks", spy)
        mp.setattr(Axes, "text", text_spy)
        written = gains_heatmap(report, tmp_path / "g.png", ("png",), 60)
    assert written == [tmp_path / "g.png"]
    baselines = {t.baseline for t in report.tables}
    assert captured and not baselines & set(captured[-1])
    frame = report.to_frame()
    shown = frame[~frame["strategy"].isin(baselines) & frame["gain"].notna()]
    significant = shown.groupby(["strategy", "task"])["significant"].agg(lambda v: all(x is True for x in v))
    assert sum(t.endswith("*") for t in texts) == int(significant.sum())


def _shifted_copy(tmp_path: Path, shift: dict[tuple[str, str], float]) -> Path:
    """The golden run with some cells' metrics moved, as another harness version might: each seed by
    `delta` plus noise of half the cell's own seed-to-seed spread (another seed's deviation from the
    mean), so the same seeds in A and B differ by more than a constant, as reruns do."""
    copy = tmp_path / "b"
    shutil.copytree(GOLDEN, copy)
    store = Store(copy)
    results = store.results()
    for result in results:
        delta = shift.get((result.backbone, result.strategy), 0.0)
        if result.task == "cls" and delta and result.status == "ok":
            seeds = sorted(
                (r for r in results if (r.task, r.backbone, r.strategy, r.status) == ("cls", result.backbone,
                 result.strategy, "ok")), key=lambda r: r.seed)  # fmt: skip
            mean = {k: sum(r.metrics[k] for r in seeds) / len(seeds) for k in result.metrics}
            other = seeds[(seeds.index(result) + 1) % len(seeds)]
            data = result.to_json()
            data["metrics"] = {k: v + delta + 0.5 * (other.metrics[k] - mean[k]) for k, v in result.metrics.items()}
            store.save(CellResult.from_json(data))
    return copy


def test_compare_flags_changes_beyond_noise_only(tmp_path: Path) -> None:
    same = runner.invoke(app, ["compare", str(GOLDEN), str(GOLDEN), "-f", "csv"])
    frame = pd.read_csv(io.StringIO(same.output))
    assert set(frame["verdict"]) <= {"identical", "too few seeds to test", "no ok result on a side"}
    other = _shifted_copy(tmp_path, {("r18", "full"): 0.1, ("r18", "bitfit"): 0.1, ("r18", "probe"): 0.001})
    done = runner.invoke(app, ["compare", str(GOLDEN), str(other), "-f", "csv"])
    assert done.exit_code == 0, done.output
    frame = pd.read_csv(io.StringIO(done.output)).set_index(["task", "backbone", "strategy"])
    full = frame.loc[("cls", "r18", "full")]
    assert full["verdict"] == "changed" and full["diff"] == pytest.approx(0.1)
    # the same shift on the noisy bitfit cells stays within noise (s = 0.2 over three seeds)
    assert frame.loc[("cls", "r18", "bitfit"), "verdict"] == "same within noise"
    assert frame.loc[("cls", "r18", "probe"), "verdict"] == "same within noise"
    assert frame.loc[("cls", "r18", "partial"), "verdict"] == "too few seeds to test"
    text = runner.invoke(app, ["compare", str(GOLDEN), str(other)]).output
    assert "1 of 11 cells changed beyond noise" in text
    assert "| cls | r18 | full | top1 | 0.7200 [0.6703, 0.7697] (3) | 0.8200 [0.7770, 0.8630] (3) |" in text
    assert "8 paired over shared seeds; p-values Holm-corrected over the 8 cells tested" in text


def test_report_marks_doubtful_and_loader_bound_timings(tmp_path: Path) -> None:
    """Costs get the metrics' treatment: an interval over seeds, and a mark with its reason when in doubt."""
    copy = tmp_path / "timed"
    shutil.copytree(GOLDEN, copy)
    store = Store(copy)
    for result in store.results():
        if result.task != "cls" or result.backbone != "r18" or result.status != "ok":
            continue
        data = result.to_json()
        cost = data["cost"]
        cost.update(cores=2, load_start=1.0, load_end=1.2)
        if result.strategy == "full":  # waited for its loader half of the time
            cost["data_wait_seconds"] = cost["train_seconds"] / 2
        if result.strategy == "probe" and result.seed == 1:  # another process shared the CPU
            cost.update(train_seconds=cost["train_seconds"] * 4, load_end=4.4)
        store.save(CellResult.from_json(data))
    rows = build_report(copy, tasks=("cls",)).tables[0].rows.set_index(["backbone", "strategy"])
    full, probe, bitfit = rows.loc[("r18", "full")], rows.loc[("r18", "probe")], rows.loc[("r18", "bitfit")]
    assert full["loader_bound"] and full["data_wait_fraction"] == pytest.approx(0.5) and not full["timing_disturbed"]
    assert (
        probe["timing_disturbed"]
        and probe["timing_doubt"] == "seeds' time per step differs 4.0x; load average 4.4 on 2 cores"
    )
    assert probe["train_device_hours_ci_half_width"] > 0
    assert not bitfit["timing_disturbed"] and not bitfit["loader_bound"]
    text = runner.invoke(app, ["report", str(copy), "--task", "cls"]).output
    assert "(loader-bound)" in text and " † |" in text
    assert "† r18 / probe: timing doubtful (seeds' time per step differs 4.0x; load average 4.4 on 2 cores)" in text
    assert "r18 / full: loader-bound, 50% of training spent waiting for batches" in text
