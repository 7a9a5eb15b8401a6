"""Running a suite's searches: every trial is a cell, Optuna proposes them (ask/tell), the chosen
setting then runs on every suite seed.

The protocol. A trial trains with the search's seed and is scored on the validation split (the
ranking metric at the epoch the cell evaluates); once the budget is spent, the best trial's
setting makes the search's final cells, one per suite seed, and the report shows their test
metrics, so no reported number is one the search selected on.

Reproducible proposals. Trials are proposed in rounds of `parallel`: a round is asked once the
previous one is told, and trial N's sampler is seeded from (search seed, N). What a search
proposes therefore depends on its seed and its trials' results only, never on timing, the
executor or an interruption: a rerun after a kill proposes the same trials, and the trials whose
cells are stored are told from the store instead of being run again.

The study lives in Optuna's journal file, `search/<key>.journal`: an append-only log under a file
lock, which concurrent runs may share and which a kill -9 leaves readable (a torn last line is cut
before the journal is opened; SQLite would need a server-grade filesystem lock on shared disks).
`search/<key>.json` summarises it for the report.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.cell import Cell
from harness.grid import Variant, excluded, plan_cell, pretrain_cell, variants
from harness.registry import Registry
from harness.result import CellResult
from harness.search_check import numeric_kind
from harness.search_spec import Range, SearchSpec
from harness.search_summary import SUMMARY_VERSION
from harness.settings import BackboneSpec, StrategySpec, Suite, TaskSpec, Training, TrainingOverrides, settings_key
from harness.store import Store, write_json


@dataclass(frozen=True)
class SearchPlan:
    """One strategy's search on one task x backbone: what makes its cells, and its budget."""

    key: str
    suite: Suite
    task: TaskSpec
    backbone: BackboneSpec
    strategy: StrategySpec
    spec: SearchSpec
    base: Variant
    pretrain_keys: dict[str, str]
    metric: str
    lower_is_better: bool
    #: the pretraining stage the cells' weights come from, if any
    pretrain: str | None = None

    @property
    def labels(self) -> tuple[str, str, str]:
        return self.task.name, self.backbone.id, self.strategy.id

    def cell(self, registry: Registry, values: dict[str, Any], seed: int, setting: str) -> Cell:
        """The cell of this search's strategy with `values` (path -> value) over its base setting."""
        training = {path.partition(".")[2]: v for path, v in values.items() if path.startswith("training.")}
        options = {path.partition(".")[2]: v for path, v in values.items() if path.startswith("options.")}
        variant = Variant(
            setting,
            Training.model_validate({**self.base.training.model_dump(), **training}),
            {**self.base.options, **options},
        )
        return plan_cell(
            self.suite, registry, self.task, self.backbone, self.strategy, variant, seed, self.pretrain_keys
        )


def plan_searches(suite: Suite, registry: Registry) -> list[SearchPlan]:
    """Every search of the suite: each searched strategy on each task x backbone it is not excluded from."""
    pretrain_keys = {p.name: pretrain_cell(p, suite, registry).key for p in suite.pretrain}
    plans = []
    for task in suite.tasks:
        for backbone in suite.backbones:
            for strategy in suite.strategies:
                spec = suite.search_for(strategy)
                if spec is None or excluded(suite, task, backbone, strategy):
                    continue
                base = variants(suite, task, strategy, registry)[0]
                template = plan_cell(suite, registry, task, backbone, strategy, base, spec.trial_seed, pretrain_keys)
                metric = template.settings.task.metric
                lower = metric in getattr(registry.get("task", task.kind), "lower_is_better", ())
                identity = {"cell": template.settings.as_json(), "search": spec.model_dump(mode="json")}
                identity["cell"].pop("seed")
                plans.append(
                    SearchPlan(
                        settings_key(identity),
                        suite,
                        task,
                        backbone,
                        strategy,
                        spec,
                        base,
                        pretrain_keys,
                        metric,
                        lower,
                        template.pretrain,
                    )
                )
    return plans


def setting_label(values: dict[str, Any]) -> str:
    """`lr=0.0123, weight_decay=1.2e-05`: the values a trial or a search's choice sets."""
    return ", ".join(f"{path.partition('.')[2]}={_short(v)}" for path, v in values.items())


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def validation_score(result: CellResult) -> float | None:
    """A trial's score: the ranking metric on the validation split at the epoch whose test metrics the
    cell reports (the best one with `select_epoch = "best_val"`, else the last)."""
    if result.status != "ok" or not result.curve:
        return None
    metric = result.settings.get("task", {}).get("metric")
    if result.settings.get("training", {}).get("select_epoch") == "best_val":
        value = result.best.get("value")
    else:
        value = result.curve[-1].get("val", {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def derived_seed(seed: int, number: int) -> int:
    """The sampler seed of trial `number`: one stream per trial, so a proposal never depends on how
    many draws earlier proposals made (or on a restart in between)."""
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _repair_journal(path: Path) -> None:
    """Cut a torn last line (a writer killed mid-append): the journal reader refuses lines after one."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


@dataclass
class SearchRun:
    """One search while the suite runs: its study, the trials in flight, and what it asks next."""

    plan: SearchPlan
    registry: Registry
    store: Store
    #: trial number -> its cell, for the trials in flight
    running: dict[int, Cell] = field(default_factory=dict)
    finals: list[Cell] = field(default_factory=list)
    #: `bench run --fresh`: the study starts over and no stored trial is told from the store
    fresh: bool = False
    #: cells (trials, final runs) taken from the store rather than run
    reused: int = 0
    study: Any = None

    @property
    def journal(self) -> Path:
        return self.store.root / "search" / f"{self.plan.key}.journal"

    @property
    def summary_path(self) -> Path:
        return self.store.root / "search" / f"{self.plan.key}.json"

    def open(self) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        if self.fresh:
            self.journal.unlink(missing_ok=True)
        _repair_journal(self.journal)
        with warnings.catch_warnings():  # the journal storage's "experimental" notice
            warnings.simplefilter("ignore")
            storage = JournalStorage(JournalFileBackend(str(self.journal)))
        self.study = optuna.create_study(
            study_name=self.plan.key,
            storage=storage,
            direction="minimize" if self.plan.lower_is_better else "maximize",
            load_if_exists=True,
        )

    # --- the distributions and samplers -------------------------------------------------

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        found: dict[str, Any] = {}
        for path, dimension in self.plan.spec.space.items():
            if isinstance(dimension, list) or self.plan.spec.method == "grid":
                found[path] = CategoricalDistribution(_choices(dimension))
            elif self._kind(path) is int:
                step = int(dimension.step or 1)
                found[path] = IntDistribution(int(dimension.low), int(dimension.high), log=dimension.log, step=step)
            else:
                found[path] = FloatDistribution(dimension.low, dimension.high, log=dimension.log, step=dimension.step)
        return found

    def _kind(self, path: str) -> type | None:
        root, _, name = path.partition(".")
        model = (
            TrainingOverrides if root == "training" else self.registry.get("strategy", self.plan.strategy.name).Options
        )
        return numeric_kind(model.model_fields[name].annotation)

    def sampler(self, number: int) -> Any:
        import optuna

        spec, seed = self.plan.spec, derived_seed(self.plan.spec.trial_seed, number)
        if spec.method == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if spec.method == "grid":
            grid = {path: _choices(d) for path, d in spec.space.items()}
            # one seed for every ask: the sampler shuffles the grid by it and gives trial N the Nth point
            return optuna.samplers.GridSampler(grid, seed=spec.trial_seed)
        startup = max(1, min(10, spec.budget() // 3))  # Optuna's 10 random trials would be a whole small budget
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)

    # --- the run ----------------------------------------------------------------------------

    def start(self) -> list[Cell]:
        """The cells to run first: the trials a killed run left in flight, else the next round, else the finals."""
        self.open()
        import optuna

        for trial in self.study.get_trials(deepcopy=False):
            if trial.state == optuna.trial.TrialState.RUNNING:
                self.running[trial.number] = self.trial_cell(trial.number, trial.params)
            else:
                self.reused += 1  # told by an earlier run
        return self._told_from_store(list(self.running.values())) or self.advance()

    def trial_cell(self, number: int, params: dict[str, Any]) -> Cell:
        values = {path: params[path] for path in self.plan.spec.space if path in params}
        label = f"trial {number}: {setting_label(values)}"
        return self.plan.cell(self.registry, values, self.plan.spec.trial_seed, label)

    def owns(self, key: str) -> bool:
        return any(cell.key == key for cell in self.running.values())

    def finished(self, cell: Cell, result: CellResult) -> list[Cell]:
        """Tell the study what a trial scored; the cells to run next (the next round, or the finals)."""
        for number, running in list(self.running.items()):
            if running.key == cell.key:
                self._tell(number, result)
        return self.advance() if not self.running else []

    def _tell(self, number: int, result: CellResult) -> None:
        import optuna

        del self.running[number]
        score = validation_score(result)
        # samplers are made per ask; telling with GridSampler would call `study.stop`, which only `optimize` allows
        self.study.sampler = optuna.samplers.RandomSampler(seed=0)
        if score is None:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        else:
            self.study.tell(number, score, skip_if_finished=True)
        self.write_summary()

    def _told_from_store(self, cells: list[Cell]) -> list[Cell]:
        """Tell the trials whose cells the store already has; the cells left to run (an empty list
        after a round told entirely from the store means: advance)."""
        left = []
        for cell in cells:
            result = None if self.fresh else self.store.load(cell.key)
            if result is not None and result.status in ("ok", "failed", "diverged", "skipped"):
                number = next(n for n, c in self.running.items() if c.key == cell.key)
                self._tell(number, result)
                self.reused += 1
            else:
                left.append(cell)
        return left

    def advance(self) -> list[Cell]:
        """Ask the next round (trials told from the store are skipped over), or make the final cells."""
        while True:
            asked = len(self.study.trials)
            room = min(self.plan.spec.parallel, self.plan.spec.budget() - asked)
            if room <= 0:
                return self._finals()
            for _ in range(room):
                number = len(self.study.trials)
                self.study.sampler = self.sampler(number)
                trial = self.study.ask(self.distributions())
                cell = self.trial_cell(trial.number, trial.params)
                trial.set_user_attr("cell", cell.key)
                self.running[trial.number] = cell
            left = self._told_from_store(list(self.running.values()))
            if left:
                return left

    def _finals(self) -> list[Cell]:
        """The chosen setting on every suite seed (the search's base setting, failed, if no trial scored)."""
        if self.finals:
            return []
        self.write_summary()
        best = self._best()
        values = {path: best.params[path] for path in self.plan.spec.space} if best is not None else {}
        label = setting_label(values) if values else "no trial scored"
        self.finals = [self.plan.cell(self.registry, values, seed, label) for seed in self.plan.suite.seeds]
        if best is None:
            why = f"no trial of its search scored ({len(self.study.trials)} failed or were skipped)"
            self.finals = [replace(cell, skip_reason=cell.skip_reason or why) for cell in self.finals]
        return self.finals

    def finals_to_run(self) -> list[Cell]:
        """The final cells the store does not have yet (all with `fresh`); the others count as reused."""
        left = [c for c in self.finals if self.fresh or not self.store.is_done(c.key, c.keep_model)]
        self.reused += len(self.finals) - len(left)
        return left

    def _best(self) -> Any:
        try:
            return self.study.best_trial
        except ValueError:  # no complete trial
            return None

    # --- the summary the report reads ---------------------------------------------------------

    def write_summary(self) -> None:
        import optuna

        trials = []
        for trial in self.study.get_trials(deepcopy=False):
            trials.append(
                {
                    "number": trial.number,
                    "state": trial.state.name.lower(),
                    "params": {path: trial.params.get(path) for path in self.plan.spec.space},
                    "value": trial.value,
                    "cell": trial.user_attrs.get("cell"),
                }
            )
        best = self._best()
        complete = [t for t in self.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        done = len(trials) >= self.plan.spec.budget() and not self.running
        task, backbone, strategy = self.plan.labels
        summary = {
            "version": SUMMARY_VERSION,
            "task": task,
            "backbone": backbone,
            "strategy": strategy,
            "method": self.plan.spec.method,
            "budget": self.plan.spec.budget(),
            "seed": self.plan.spec.trial_seed,
            "parallel": self.plan.spec.parallel,
            "metric": self.plan.metric,
            "direction": "minimize" if self.plan.lower_is_better else "maximize",
            "space": {p: _as_json(d) for p, d in self.plan.spec.space.items()},
            "trials": trials,
            "finished": done,
            "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params},
            "chosen": setting_label({p: best.params[p] for p in self.plan.spec.space}) if best is not None else None,
            "importances": _importances(self.study) if done and len(complete) >= 2 else {},
        }
        write_json(self.summary_path, summary)


def _choices(dimension: Range | list[Any]) -> list[Any]:
    return list(dimension) if isinstance(dimension, list) else dimension.points()


def _as_json(dimension: Range | list[Any]) -> Any:
    return list(dimension) if isinstance(dimension, list) else dimension.model_dump(exclude_none=True)


def _importances(study: Any) -> dict[str, float]:
    """Optuna's fANOVA importances of the searched paths (empty where they cannot be computed)."""
    import optuna

    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}
