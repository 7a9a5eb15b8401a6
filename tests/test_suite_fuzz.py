"""Fuzzing suite files through `bench plan` (issue 10).

Four properties, each checked on suites hypothesis generates from the schema (the pydantic
models of `harness.suite` and the `Options` of the components in the real registry):

1. a valid suite plans: exit 0;
2. a valid suite mutated to break ONE documented rule (docs/suites.md) never plans: exit 2,
   no traceback, and one line on stderr that names the file;
3. a valid suite's TOML text with random characters or bytes inserted, deleted or replaced:
   exit 0 or 2 (no claim which), never a traceback;
4. a valid suite with its whole floats written as TOML integers (`lr = 1` for `lr = 1.0`, which
   strict validation takes as the same number) plans the same cells with the same keys.

`bench plan` never trains; what it would otherwise spend time on, counting FLOPs for the
estimate (seconds per detection model on a CPU), is replaced by a constant here: validation
is what is fuzzed. Example counts are in `EXAMPLES`; runs are derandomized (the same examples
on every run and machine).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import string
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from unittest import mock

import annotated_types as at
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, note, reject, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from typer.testing import CliRunner

from harness import estimate
from harness.cli import create_app
from harness.registry import default_registry
from harness.settings import TrainingOverrides

#: examples per test: `valid` for valid suites, `mutation` per mutation kind (x len(MUTATIONS)), `bytes` for
#: byte-level mutations, `spelling` for number spellings
EXAMPLES = {"valid": 60, "mutation": 15, "bytes": 100, "spelling": 40}

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: minutes on a failure
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

REGISTRY = default_registry()
runner = CliRunner()
app = create_app()

Draw = Callable[..., Any]


# ---------------------------------------------------------------- running `bench plan`


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where suites are written and `bench plan` runs; FLOPs counting stubbed (a constant per image)."""
    root = tmp_path_factory.mktemp("fuzz")
    torch.save({"stages.0.weight": torch.zeros(1)}, root / "weights.pt")
    with mock.patch.object(estimate, "count_flops", lambda *args, **kwargs: 1e9):
        yield root


def plan(workdir: Path, text: str | bytes, *options: str) -> tuple[Path, Any]:
    path = workdir / "suite.toml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    with contextlib.chdir(workdir):
        result = runner.invoke(app, ["plan", str(path), *options])
    return path, result


def assert_no_crash(result: Any) -> None:
    """Exit 0 or 2, and no uncaught exception (CliRunner keeps it in `result.exception`)."""
    output = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {type(result.exception).__name__}: {result.exception}\n{output[-2000:]}"
    )
    assert result.exit_code in (0, 2), output[-2000:]
    assert "Traceback" not in output, output[-2000:]


def assert_refused(path: Path, result: Any) -> None:
    """Exit 2 with one line on stderr that names the file."""
    assert_no_crash(result)
    assert result.exit_code == 2, f"a suite that breaks a rule planned (exit 0):\n{result.stdout[-1500:]}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"not one line on stderr: {result.stderr!r}"
    assert str(path) in lines[0], f"stderr does not name {path}: {lines[0]!r}"


# ---------------------------------------------------------------- TOML


BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else toml_string(key)


def toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _digits(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def _digits(value: int) -> str:
    """`str(value)`, also for integers longer than Python writes by default (`huge_integer`)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(value)
    finally:
        sys.set_int_max_str_digits(limit)


def to_toml(data: dict[str, Any]) -> str:
    """Top-level scalars, then `[table]`s and `[[array of tables]]`; everything deeper inline."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            body = [f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
            tables.append("\n".join([f"[{toml_key(key)}]", *body]))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                body = [f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items()]
                tables.append("\n".join([f"[[{toml_key(key)}]]", *body]))
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n\n" + "\n\n".join(tables) + "\n"


# ---------------------------------------------------------------- values from the schema


def _bounds(metadata: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            found.update(_bounds(list(item.metadata)))
        elif isinstance(item, at.Ge):
            found["lo"] = item.ge
        elif isinstance(item, at.Gt):
            found["lo"], found["lo_open"] = item.gt, True
        elif isinstance(item, at.Le):
            found["hi"] = item.le
        elif isinstance(item, at.Lt):
            found["hi"], found["hi_open"] = item.lt, True
        elif isinstance(item, at.MinLen):
            found["min_len"] = item.min_length
    return found


def from_annotation(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> st.SearchStrategy[Any]:
    """A strategy for valid values of a field's annotation and constraints (ints, floats, bools, literals, lists)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return from_annotation(base, [*metadata, *extra])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return st.one_of(*(from_annotation(a, metadata) for a in args))
    if origin is Literal:
        return st.sampled_from(get_args(annotation))
    bounds = _bounds(list(metadata))
    if origin is list:
        item = from_annotation(get_args(annotation)[0])
        return st.lists(item, min_size=max(1, bounds.get("min_len", 0)), max_size=3, unique=True)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        lo = bounds.get("lo", 0) + bool(bounds.get("lo_open"))
        hi = bounds["hi"] - bool(bounds.get("hi_open")) if "hi" in bounds else lo + 10_000
        return st.integers(lo, hi)
    if annotation is float:
        lo, hi = float(bounds.get("lo", 0.0)), float(bounds.get("hi", bounds.get("lo", 0.0) + 100.0))
        exact = st.floats(
            lo,
            hi,
            exclude_min=bool(bounds.get("lo_open")),
            exclude_max=bool(bounds.get("hi_open")) and "hi" in bounds,
            allow_nan=False,
            allow_infinity=False,
        )
        # mostly values a person writes (0.1, 2.5), sometimes any float in range
        decimal = (
            st.integers(0, 1000)
            .map(lambda n: lo + (hi - lo) * n / 1000)
            .filter(
                lambda v: (
                    (v > lo if bounds.get("lo_open") else v >= lo) and (v < hi if bounds.get("hi_open") else v <= hi)
                )
            )
        )
        # and whole numbers as TOML integers (`lr = 1` is 1.0)
        whole = st.integers(math.ceil(lo), max(math.ceil(lo), math.floor(min(hi, lo + 100)))).filter(
            lambda v: (v > lo if bounds.get("lo_open") else v >= lo) and (v < hi if bounds.get("hi_open") else v <= hi)
        )
        return st.one_of(decimal, exact, whole)
    raise LookupError(f"no value strategy for {annotation!r}; give one in SPECIAL")


#: option values the schema cannot say (strings with meaning, cross-field rules, files)
SPECIAL: dict[tuple[str, str], st.SearchStrategy[Any] | None] = {
    ("shapes", "shapes"): st.lists(
        st.sampled_from(
            ["circle", "square", "triangle", "cross", "ring", "diamond", "hexagon", "star", "ellipse", "semicircle"]
        ),
        min_size=2,
        max_size=5,
        unique=True,
    ),
    ("shapes", "object_scale"): st.tuples(st.floats(0.02, 0.5), st.floats(0.02, 0.5)).map(sorted),
    ("shapes", "seed"): st.integers(0, 2**32 - 1),
    ("shapes", "train"): st.integers(1, 5000),
    ("shapes", "val"): st.integers(1, 5000),
    ("shapes", "test"): st.integers(1, 5000),
    ("detection", "anchor_sizes"): None,  # must match fpn_stages: left to the default
    ("detection", "aspect_ratios"): st.lists(
        st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]), min_size=1, max_size=3, unique=True
    ),
    ("lora", "pattern"): None,
    ("distill", "teacher_backbone"): None,  # set from the suite's backbones
    ("distill", "teacher_strategy"): None,
    ("distill", "teacher_checkpoint"): None,
    ("soup", "ingredients"): None,  # set from the suite's strategies
    ("timm", "model"): st.sampled_from(["resnet18", "resnet34"]),
    ("processes", "devices"): st.sampled_from([["cpu"], ["cuda:0"], ["cuda:0", "cuda:1"]]),
    ("ray", "address"): None,
    ("ray", "init"): None,
}


def field_strategy(owner: str, model: type[BaseModel], field: str) -> st.SearchStrategy[Any] | None:
    if (owner, field) in SPECIAL:
        return SPECIAL[owner, field]
    info = model.model_fields[field]
    return from_annotation(info.annotation, info.metadata)


def distinct(values: list[Any]) -> list[Any]:
    """Values without repeats (1 and 1.0 are one setting): a sweep that repeats a value makes a cell twice."""
    found: list[Any] = []
    for value in values:
        if not any(value == seen and isinstance(value, bool) == isinstance(seen, bool) for seen in found):
            found.append(value)
    return found


def validates(model: type[BaseModel], values: dict[str, Any]) -> bool:
    try:
        model.model_validate(values)
    except ValidationError:
        return False
    return True


@st.composite
def options_of(draw: Draw, kind: str, name: str, sweeps: bool = False) -> dict[str, Any]:
    """Valid options for a component: a subset of its fields, values from their annotations, checked by its model.

    Fields the schema cannot fill (SPECIAL: None) are left out; required ones among them get a
    placeholder for the check and are set by the caller (distill's teacher).
    """
    model = REGISTRY.get(kind, name).Options
    fields = [f for f in model.model_fields if field_strategy(name, model, f) is not None]
    placeholders = {f: "x" for f, info in model.model_fields.items() if info.is_required() and f not in fields}
    required = [f for f in fields if model.model_fields[f].is_required()]
    optional = [f for f in fields if f not in required]
    for _ in range(10):  # a few subsets: some models need one of two fields (partial's stages)
        chosen = required + (draw(st.lists(st.sampled_from(optional), max_size=3, unique=True)) if optional else [])
        strategies_ = {f: field_strategy(name, model, f) for f in chosen}
        values = draw(st.fixed_dictionaries(strategies_))  # type: ignore[arg-type]
        if validates(model, {**placeholders, **values}):
            break
    else:
        reject()
    if sweeps and values and draw(st.integers(0, 3)) == 0:  # one option swept over distinct values
        key = draw(st.sampled_from(sorted(values)))
        extra = draw(st.lists(strategies_[key], min_size=1, max_size=2))  # type: ignore[arg-type]
        choices = distinct([values[key], *extra])
        if all(validates(model, {**placeholders, **values, key: c}) for c in choices):
            values[key] = choices
    return values


TRAINING_FIELDS = list(TrainingOverrides.model_fields)


@st.composite
def training_of(draw: Draw, sweeps: bool = True, max_fields: int = 4) -> dict[str, Any]:
    """Training overrides from `TrainingOverrides`'s fields; with `sweeps`, at most one given as a list."""
    keys = draw(st.lists(st.sampled_from(TRAINING_FIELDS), max_size=max_fields, unique=True))
    values = {k: draw(field_strategy("training", TrainingOverrides, k)) for k in keys}  # type: ignore[arg-type]
    if sweeps and keys and draw(st.integers(0, 2)) == 0:
        key = draw(st.sampled_from(keys))
        strategy = field_strategy("training", TrainingOverrides, key)
        drawn = draw(st.lists(strategy, min_size=1, max_size=3))  # type: ignore[arg-type]
        if key == "amp":  # `amp = true` is spelled "auto" (one cell key), so a sweep of both is one cell
            drawn = ["auto" if v is True else v for v in drawn]
        choices = distinct(drawn)
        values[key] = choices
    return values


# ---------------------------------------------------------------- valid suites

#: a label (task name, backbone or strategy label): any printable text, mostly plain names
LABEL = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True),
    st.text(st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" "), min_size=1, max_size=12),
)
#: a suite name is a folder name: no separators, not . or .., no surrounding spaces or leading ~
SUITE_NAME = LABEL.filter(
    lambda n: n not in (".", "..") and "/" not in n and "\\" not in n and n == n.strip() and not n.startswith("~")
)
TASK_KINDS = REGISTRY.names("task")
BACKBONES = REGISTRY.names("backbone")
STRATEGIES = REGISTRY.names("strategy")
EXECUTORS = REGISTRY.names("executor")


def published(backbone: str) -> list[str]:
    return list(REGISTRY.create("backbone", backbone, {}).named_weights())


@st.composite
def datasets(draw: Draw) -> dict[str, Any]:
    """The offline `shapes` dataset, which serves every task kind."""
    dataset: dict[str, Any] = {"name": "shapes"}
    options = draw(options_of("dataset", "shapes"))
    if options or draw(st.booleans()):
        dataset["options"] = options
    return dataset


@st.composite
def tasks(draw: Draw, name: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(TASK_KINDS))
    task: dict[str, Any] = {"name": name, "kind": kind, "dataset": draw(datasets())}
    options = draw(options_of("task", kind))
    if options:
        task["options"] = options
    if draw(st.booleans()):  # a metric the task reports with these options and the dataset's classes
        dataset = task["dataset"]
        classes = REGISTRY.create("dataset", "shapes", dataset.get("options", {})).class_names(kind)
        metrics = REGISTRY.create("task", kind, options).reported_metrics(len(classes))
        task["metric"] = draw(st.sampled_from(metrics))
    training = draw(training_of())
    if training:
        task["training"] = training
    return task


@st.composite
def backbones(
    draw: Draw, name: str, label: str | None, pretrain: list[dict[str, Any]], workdir: Path
) -> dict[str, Any]:
    backbone: dict[str, Any] = {"name": name}
    if label is not None:
        backbone["label"] = label
    sources = ["none"] + [f"pretrain:{p['name']}" for p in pretrain if p["backbone"] == name] + published(name)
    sources += [str(workdir / "weights.pt"), f"file:{workdir / 'weights.pt'}"]
    if draw(st.booleans()):
        backbone["weights"] = draw(st.sampled_from(sources))
    options = draw(options_of("backbone", name))
    if options:
        backbone["options"] = options
    return backbone


@st.composite
def strategies(draw: Draw, label: str | None, name: str, others: list[str], backbone_ids: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name}
    if label is not None:
        spec["label"] = label
    options = draw(options_of("strategy", name, sweeps=True))
    if name == "distill":  # the teacher: a backbone of this suite, a strategy of it that has no teacher itself
        options["teacher_backbone"] = draw(st.sampled_from(backbone_ids))
        options["teacher_strategy"] = draw(st.sampled_from(others))
    if name == "soup":  # the ingredients: strategies of this suite that use no other cells
        options["ingredients"] = draw(st.lists(st.sampled_from(others), min_size=1, max_size=2, unique=True))
    if options:
        spec["options"] = options
    training = draw(training_of())
    if training:
        spec["training"] = training
    return spec


#: strategies that use other cells of the suite (a teacher, ingredients): never a teacher or an ingredient
USES_CELLS = {"distill", "soup"}
#: strategies that make their final model after the last epoch (`on_train_end`): `select_epoch = "best_val"`
#: is refused with them, since an earlier epoch's model would skip it
FINAL_MODEL_AT_END = {n for n in STRATEGIES if "on_train_end" in vars(REGISTRY.get("strategy", n))}


def unique_labels(count: int) -> st.SearchStrategy[list[str]]:
    return st.lists(LABEL, min_size=count, max_size=count, unique=True)


@st.composite
def valid_suites(draw: Draw, workdir: Path) -> dict[str, Any]:
    """A suite that follows every documented rule: generated from the schema, names from the registry."""
    suite: dict[str, Any] = {"name": draw(SUITE_NAME)}
    if draw(st.booleans()):
        suite["output"] = str(workdir / "results" / draw(SUITE_NAME))
    if draw(st.booleans()):
        suite["seeds"] = draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=2, unique=True))
    if draw(st.booleans()):
        suite["device"] = draw(st.sampled_from(["auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps"]))
    if draw(st.booleans()):
        executor = draw(st.sampled_from(EXECUTORS))
        options = draw(options_of("executor", executor))
        suite["executor"] = {"name": executor, "options": options} if options or draw(st.booleans()) else executor
    training = draw(training_of())
    if training:
        suite["training"] = training

    pretrain: list[dict[str, Any]] = []
    for name in draw(st.lists(LABEL, max_size=1, unique=True)):
        stage: dict[str, Any] = {
            "name": name,
            "backbone": draw(st.sampled_from(BACKBONES)),
            "dataset": draw(datasets()),
        }
        stage["kind"] = draw(st.sampled_from(TASK_KINDS))
        if draw(st.booleans()):
            stage["seed"] = draw(st.integers(0, 2**32 - 1))
        training = draw(training_of(sweeps=False))
        if training:
            stage["training"] = training
        pretrain.append(stage)
    if pretrain:
        suite["pretrain"] = pretrain

    # entries differ in what they train, not only in their labels: two cells with the same
    # settings are one experiment, which bench refuses (distinct dataset seeds, backbone and strategy names)
    task_names = draw(unique_labels(draw(st.integers(1, 2))))
    suite["tasks"] = [draw(tasks(name)) for name in task_names]
    if len(task_names) > 1:
        seeds = draw(
            st.lists(st.integers(0, 2**32 - 1), min_size=len(task_names), max_size=len(task_names), unique=True)
        )
        for task, seed in zip(suite["tasks"], seeds, strict=True):
            task["dataset"].setdefault("options", {})["seed"] = seed

    backbone_ids = draw(unique_labels(draw(st.integers(1, 2))))
    backbone_names = draw(
        st.lists(st.sampled_from(BACKBONES), min_size=len(backbone_ids), max_size=len(backbone_ids), unique=True)
    )
    specs = []
    for i, (label, name) in enumerate(zip(backbone_ids, backbone_names, strict=True)):
        spec = draw(backbones(name, label, pretrain, workdir))
        if i == 0 and len(backbone_ids) == 1 and draw(st.booleans()):
            del spec["label"]  # the id is then the name
        specs.append(spec)
    suite["backbones"] = specs
    backbone_ids = [b.get("label", b["name"]) for b in specs]

    strategy_ids = draw(unique_labels(draw(st.integers(1, 3))))
    names = draw(
        st.lists(st.sampled_from(STRATEGIES), min_size=len(strategy_ids), max_size=len(strategy_ids), unique=True)
    )
    if names[0] in USES_CELLS:  # the first one teaches or is an ingredient: a strategy that uses no other cells
        plain = [i for i, n in enumerate(names) if n not in USES_CELLS]
        if plain:
            names[0], names[plain[0]] = names[plain[0]], names[0]
        else:
            names[0] = draw(st.sampled_from([s for s in STRATEGIES if s not in USES_CELLS and s not in names]))
    suite["strategies"] = []
    for i, (label, name) in enumerate(zip(strategy_ids, names, strict=True)):
        teachers = [strategy_ids[j] for j in range(i) if names[j] not in USES_CELLS]
        suite["strategies"].append(draw(strategies(label, name, teachers, backbone_ids)))

    if draw(st.booleans()):
        suite["baseline"] = draw(st.sampled_from(strategy_ids))
    exclusions = []
    for _ in range(draw(st.integers(0, 2))):
        picks = {"task": task_names, "backbone": backbone_ids, "strategy": strategy_ids}
        fields = draw(st.lists(st.sampled_from(sorted(picks)), min_size=1, max_size=3, unique=True))
        exclusions.append({f: draw(st.sampled_from(picks[f])) for f in fields})
    # exclusions that leave no cell are refused: one task x backbone x strategy always stays
    kept = {"task": task_names[0], "backbone": backbone_ids[0], "strategy": strategy_ids[0]}
    exclusions = [e for e in exclusions if any(value != kept[f] for f, value in e.items())]
    if exclusions:
        suite["exclude"] = exclusions
    if FINAL_MODEL_AT_END & set(names):  # best_val is refused with them
        for level in [suite, *suite["tasks"], *suite["strategies"]]:
            if "best_val" in str(level.get("training", {}).get("select_epoch")):
                del level["training"]["select_epoch"]
    return suite


# ---------------------------------------------------------------- mutations: each breaks one documented rule

INT_TRAINING = ["epochs", "max_steps", "batch_size", "eval_batch_size", "num_workers", "threads"]
FLOAT_TRAINING = ["lr", "momentum", "weight_decay", "warmup_fraction", "grad_clip"]
NUMERIC_TRAINING = INT_TRAINING + FLOAT_TRAINING
#: per training setting, values outside its documented range
OUT_OF_RANGE: dict[str, list[Any]] = {
    "epochs": [0, -1],
    "max_steps": [0, -5],
    "batch_size": [0, -1],
    "eval_batch_size": [0],
    "lr": [0.0, -0.1, 10.5, 1e9, math.nan, math.inf, -math.inf],
    "momentum": [1.0, -0.1, 2.0, math.nan],
    "weight_decay": [1.5, -1e-4, math.nan],
    "warmup_fraction": [1.0, -0.01, math.nan],
    "grad_clip": [0.0, -1.0, math.nan],
    "num_workers": [-1, 65],
    "threads": [0, 513, -2],
}
UNKNOWN_KEY = st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True)


def training_owner(draw: Draw, suite: dict[str, Any]) -> dict[str, Any]:
    """A table that holds `training` (the suite, a task or a strategy), its `training` created if need be."""
    owners = [suite, *suite["tasks"], *suite["strategies"]]
    owner = owners[draw(st.integers(0, len(owners) - 1))]
    owner.setdefault("training", {})
    return owner


def set_training(draw: Draw, suite: dict[str, Any], key: str, value: Any) -> None:
    training_owner(draw, suite)["training"][key] = value


def wrong_number_type(draw: Draw, suite: dict[str, Any]) -> None:
    """A training number given as a string, a bool or a table (`epochs = "1"`, `lr = true`)."""
    key = draw(st.sampled_from(NUMERIC_TRAINING))
    good = draw(field_strategy("training", TrainingOverrides, key))  # type: ignore[arg-type]
    value = draw(st.sampled_from([str(good), True, False, {"value": good}]))
    set_training(draw, suite, key, value)


def float_for_int(draw: Draw, suite: dict[str, Any]) -> None:
    """An integer setting given as a float (`epochs = 2.0`, `batch_size = 1.5`)."""
    key = draw(st.sampled_from(INT_TRAINING))
    set_training(draw, suite, key, draw(st.integers(1, 64)) + draw(st.sampled_from([0.0, 0.5])))


def wrong_bool_type(draw: Draw, suite: dict[str, Any]) -> None:
    """`amp` given as something other than a bool (`amp = "yes"`, `amp = 1`)."""
    set_training(draw, suite, "amp", draw(st.sampled_from(["yes", "true", "on", 1, 0, 1.0, "1"])))


def wrong_choice_type(draw: Draw, suite: dict[str, Any]) -> None:
    """`optimizer` / `schedule` given as a non-string or a name not allowed."""
    key = draw(st.sampled_from(["optimizer", "schedule"]))
    set_training(draw, suite, key, draw(st.sampled_from([1, True, "SGD", "adam", "", "cosine ", {"name": "sgd"}])))


def sweep_value_wrong_type(draw: Draw, suite: dict[str, Any]) -> None:
    """One value of a training sweep of the wrong type (`lr = [0.01, "0.1"]`)."""
    key = draw(st.sampled_from(NUMERIC_TRAINING))
    good = draw(field_strategy("training", TrainingOverrides, key))  # type: ignore[arg-type]
    bad = draw(st.sampled_from([str(good), True, [good]]))
    set_training(draw, suite, key, draw(st.permutations([good, bad])))


def training_out_of_range(draw: Draw, suite: dict[str, Any]) -> None:
    """A training setting outside its documented range (`lr = -0.1`, `epochs = 0`, `momentum = 1.0`)."""
    key = draw(st.sampled_from(sorted(OUT_OF_RANGE)))
    value = draw(st.sampled_from(OUT_OF_RANGE[key]))
    if draw(st.booleans()):
        good = draw(field_strategy("training", TrainingOverrides, key))  # type: ignore[arg-type]
        value = draw(st.permutations([good, value]))  # in a sweep
    set_training(draw, suite, key, value)


def empty_sweep(draw: Draw, suite: dict[str, Any]) -> None:
    """A training setting or strategy option swept over no value (`lr = []`)."""
    if draw(st.booleans()):
        set_training(draw, suite, draw(st.sampled_from(TRAINING_FIELDS)), [])
    else:
        suite["strategies"].append({"name": "lora", "label": "fuzz-empty", "options": {"rank": []}})


def duplicate_sweep_values(draw: Draw, suite: dict[str, Any]) -> None:
    """A sweep listing one value twice: two cells with the same setting (`lr = [0.01, 0.01]`).

    Where the cells exist: in a strategy's training (the most specific level), nothing excluded.
    """
    suite.pop("exclude", None)
    if draw(st.booleans()):
        key = draw(st.sampled_from(TRAINING_FIELDS))
        value = draw(field_strategy("training", TrainingOverrides, key))  # type: ignore[arg-type]
        values = [value, value]
        if draw(st.booleans()):  # one number written twice, as a TOML integer and as a float: `lr = [1, 1.0]`
            key, whole = draw(
                st.sampled_from([("lr", 1), ("lr", 10), ("momentum", 0), ("weight_decay", 1), ("grad_clip", 5)])
            )
            values = draw(st.permutations([whole, float(whole)]))
        strategy = suite["strategies"][draw(st.integers(0, len(suite["strategies"]) - 1))]
        strategy.setdefault("training", {})[key] = values
    else:
        options = draw(st.sampled_from([{"rank": [4, 4]}, {"layers": [["conv"], ["conv"]]}, {"alpha": [16, 8, 16]}]))
        suite["strategies"].append({"name": "lora", "label": "fuzz-dup", "options": options})


def seeds_wrong_type(draw: Draw, suite: dict[str, Any]) -> None:
    """`seeds` not a list of integers (`seeds = ["0"]`, `[true]`, `[1.0]`, `0`)."""
    suite["seeds"] = draw(st.sampled_from([["0"], [True], [1.0], [0, 1.5], 0, "0", "0,1", [[0]], {"a": 0}]))


def seeds_out_of_range(draw: Draw, suite: dict[str, Any]) -> None:
    """A seed < 0 or >= 2**32."""
    bad = draw(st.one_of(st.integers(-(2**63), -1), st.integers(2**32, 2**63 - 1)))
    suite["seeds"] = draw(st.permutations([*suite.get("seeds", [0]), bad]))


def seeds_not_distinct_or_empty(draw: Draw, suite: dict[str, Any]) -> None:
    """`seeds = []`, or a seed listed twice."""
    seed = draw(st.integers(0, 2**32 - 1))
    suite["seeds"] = draw(st.sampled_from([[], [seed, seed], [seed, seed + 1, seed]]))


def top_level_wrong_type(draw: Draw, suite: dict[str, Any]) -> None:
    """A top-level string given as a number, bool, list or table (`name = 1`, `device = true`)."""
    key = draw(st.sampled_from(["name", "output", "baseline", "device", "executor"]))
    suite[key] = draw(
        st.sampled_from([1, 0.5, True, ["x"], {"x": 1}] if key != "executor" else [1, True, ["sequential"]])
    )


def structure_wrong_type(draw: Draw, suite: dict[str, Any]) -> None:
    """A table or list of tables of the wrong shape (`training = 1`, `dataset = "shapes"`, `[tasks]` as a table)."""
    where = draw(
        st.sampled_from(
            ["training", "tasks", "backbones", "strategies", "exclude", "dataset", "options", "task_training"]
        )
    )
    if where == "training":
        suite["training"] = draw(st.sampled_from([1, "fast", [1, 2], True]))
    elif where in ("tasks", "backbones", "strategies"):
        suite[where] = draw(st.sampled_from([suite[where][0], "x", [1], [["x"]]]))
    elif where == "exclude":
        suite["exclude"] = draw(st.sampled_from([{"task": suite["tasks"][0]["name"]}, "x", [1]]))
    elif where == "dataset":
        suite["tasks"][0]["dataset"] = draw(st.sampled_from(["shapes", ["shapes"], 1]))
    elif where == "options":
        target = draw(st.sampled_from(["tasks", "strategies", "backbones"]))
        suite[target][0]["options"] = draw(st.sampled_from([[1], "x", 1, True]))
    else:
        suite["tasks"][0]["training"] = draw(st.sampled_from([1, "x", True]))


def unknown_key_top(draw: Draw, suite: dict[str, Any]) -> None:
    """A top-level key the schema does not have."""
    key = draw(UNKNOWN_KEY.filter(lambda k: k not in SUITE_KEYS))
    suite[key] = draw(st.sampled_from([1, "x", True, [1]]))


def unknown_key_table(draw: Draw, suite: dict[str, Any]) -> None:
    """A key a task, backbone, strategy, dataset, exclusion, pretraining stage or executor table does not have."""
    tables: list[tuple[dict[str, Any], set[str]]] = [
        *((t, TASK_KEYS) for t in suite["tasks"]),
        *((b, BACKBONE_KEYS) for b in suite["backbones"]),
        *((s, STRATEGY_KEYS) for s in suite["strategies"]),
        *((t["dataset"], {"name", "options"}) for t in suite["tasks"]),
        *((e, {"task", "backbone", "strategy"}) for e in suite.get("exclude", [])),
        *((p, PRETRAIN_KEYS) for p in suite.get("pretrain", [])),
    ]
    if isinstance(suite.get("executor"), dict):
        tables.append((suite["executor"], {"name", "options"}))
    table, keys = tables[draw(st.integers(0, len(tables) - 1))]
    table[draw(UNKNOWN_KEY.filter(lambda k: k not in keys and k not in ("source", "training_sweep")))] = 1


def unknown_key_training(draw: Draw, suite: dict[str, Any]) -> None:
    """A training setting that does not exist (`lr_schedule = "cosine"`, `epoch = 3`), in any training table."""
    key = draw(UNKNOWN_KEY.filter(lambda k: k not in TRAINING_FIELDS))
    value = draw(st.sampled_from([1, 0.5, "x", True, [1, 2]]))
    if suite.get("pretrain") and draw(st.booleans()):
        suite["pretrain"][0].setdefault("training", {})[key] = value if not isinstance(value, list) else 1
    else:
        set_training(draw, suite, key, value)


def unknown_key_options(draw: Draw, suite: dict[str, Any]) -> None:
    """An option the component does not take (task, dataset, backbone, strategy or executor options)."""
    key = draw(UNKNOWN_KEY)
    where = draw(st.sampled_from(["task", "dataset", "backbone", "strategy", "executor"]))
    if where == "task":
        owner, model = suite["tasks"][0], REGISTRY.get("task", suite["tasks"][0]["kind"]).Options
    elif where == "dataset":
        owner, model = suite["tasks"][0]["dataset"], REGISTRY.get("dataset", "shapes").Options
    elif where == "backbone":
        owner, model = suite["backbones"][0], REGISTRY.get("backbone", suite["backbones"][0]["name"]).Options
    elif where == "strategy":
        owner, model = suite["strategies"][0], REGISTRY.get("strategy", suite["strategies"][0]["name"]).Options
    else:
        executor = suite.get("executor", "sequential")
        executor = executor if isinstance(executor, dict) else {"name": executor}
        suite["executor"] = owner = executor
        model = REGISTRY.get("executor", executor["name"]).Options
    if key in model.model_fields:
        key += "_x"
    owner.setdefault("options", {})[key] = draw(st.sampled_from([1, "x", True, [1, 2]]))


def internal_key(draw: Draw, suite: dict[str, Any]) -> None:
    """A field the loader fills, written in the file (`training_sweep`, `source`)."""
    where = draw(st.sampled_from(["suite", "task", "strategy", "source"]))
    sweep = {"lr": [0.01, 0.1]} if draw(st.booleans()) else {}
    if where == "source":
        suite["source"] = draw(st.sampled_from(["elsewhere.toml", "<memory>", ""]))
    elif where == "suite":
        suite["training_sweep"] = sweep
    else:
        table = "tasks" if where == "task" else "strategies"
        suite[table][draw(st.integers(0, len(suite[table]) - 1))]["training_sweep"] = sweep


NONSENSE = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


def unknown_plugin(draw: Draw, suite: dict[str, Any]) -> None:
    """A task kind, dataset, backbone, strategy or executor that no plugin provides."""
    where = draw(st.sampled_from(["task", "dataset", "backbone", "strategy", "executor", "pretrain"]))
    known = {
        "task": TASK_KINDS,
        "dataset": REGISTRY.names("dataset"),
        "backbone": BACKBONES,
        "strategy": STRATEGIES,
        "executor": EXECUTORS,
        "pretrain": BACKBONES,
    }[where]
    name = draw(st.one_of(NONSENSE, st.sampled_from([n.upper() for n in known] + [n + " " for n in known])))
    name = name if name not in known else name + "_x"
    if where == "task":
        suite["tasks"][0]["kind"] = name
        suite["tasks"][0].pop("metric", None)
        suite["tasks"][0].pop("options", None)
    elif where == "dataset":
        suite["tasks"][0]["dataset"] = {"name": name}
    elif where == "backbone":
        suite["backbones"][0].update(name=name, weights="none")
        suite["backbones"][0].pop("options", None)
    elif where == "strategy":
        suite["strategies"][-1]["name"] = name
        suite["strategies"][-1].pop("options", None)
    elif where == "executor":
        suite["executor"] = name if draw(st.booleans()) else {"name": name}
    else:
        suite["pretrain"] = [{"name": "fuzz-pre", "backbone": name, "dataset": {"name": "shapes"}}]


def unknown_metric(draw: Draw, suite: dict[str, Any]) -> None:
    """A task `metric` its kind does not report (`metric = "miou"` for classification)."""
    task = suite["tasks"][draw(st.integers(0, len(suite["tasks"]) - 1))]
    metrics = REGISTRY.get("task", task["kind"]).metrics
    others = [m for kind in TASK_KINDS for m in REGISTRY.get("task", kind).metrics if m not in metrics]
    task["metric"] = draw(
        st.one_of(st.sampled_from([*others, "", "TOP1", "accuracy"]), NONSENSE.filter(lambda m: m not in metrics))
    )


def dataset_kind_mismatch(draw: Draw, suite: dict[str, Any]) -> None:
    """A task whose dataset does not serve its kind (cifar10 for detection)."""
    kind = draw(st.sampled_from(TASK_KINDS))
    names = [n for n in REGISTRY.names("dataset") if kind not in REGISTRY.get("dataset", n).kinds]
    name = draw(st.sampled_from(names))
    suite["tasks"][0] = {
        "name": suite["tasks"][0]["name"],
        "kind": kind,
        "dataset": {"name": name, "options": {"root": "."}},
    }


def missing_required(draw: Draw, suite: dict[str, Any]) -> None:
    """A required key left out (`name`, `tasks`, a task's `kind`, a strategy's `name`, ...)."""
    where = draw(
        st.sampled_from(
            [
                "name",
                "tasks",
                "backbones",
                "strategies",
                "task",
                "dataset",
                "backbone",
                "strategy",
                "pretrain",
                "teacher",
            ]
        )
    )
    if where in ("name", "tasks", "backbones", "strategies"):
        del suite[where]
        if where == "strategies":
            suite.pop("baseline", None)
            suite.pop("exclude", None)
        if where in ("tasks", "backbones"):
            suite.pop("exclude", None)
            for s in suite["strategies"]:  # a teacher's backbone is named among the backbones
                if s["name"] == "distill":
                    s["name"] = "full"
                    s.pop("options", None)
    elif where == "task":
        del suite["tasks"][0][draw(st.sampled_from(["name", "kind", "dataset"]))]
    elif where == "dataset":
        del suite["tasks"][0]["dataset"]["name"]
    elif where == "backbone":
        del suite["backbones"][0]["name"]
    elif where == "strategy":
        del suite["strategies"][0]["name"]
    elif where == "pretrain":
        stage = {"name": "fuzz-pre", "backbone": "resnet18", "dataset": {"name": "shapes"}}
        del stage[draw(st.sampled_from(sorted(stage)))]
        suite["pretrain"] = [stage]
    else:
        suite["strategies"].append({"name": "distill", "label": "fuzz-student", "options": {}})


def empty_required_list(draw: Draw, suite: dict[str, Any]) -> None:
    """`tasks`, `backbones` or `strategies` given as an empty list."""
    where = draw(st.sampled_from(["tasks", "backbones", "strategies"]))
    suite[where] = []
    suite.pop("exclude", None)
    if where == "strategies":
        suite.pop("baseline", None)


def duplicate_label(draw: Draw, suite: dict[str, Any]) -> None:
    """Two tasks (or pretraining stages) with one name, two backbones or strategies with one label (id)."""
    where = draw(st.sampled_from(["tasks", "backbones", "strategies", "pretrain", "label_is_name"]))
    if where == "pretrain":
        stage = {"name": "fuzz-pre", "backbone": "resnet18", "dataset": {"name": "shapes"}}
        suite["pretrain"] = [*suite.get("pretrain", []), stage, dict(stage)]
    elif where == "label_is_name":  # a label equal to another entry's id
        first = suite["strategies"][0]
        other = draw(st.sampled_from([s for s in STRATEGIES if s != "distill"]))
        suite["strategies"].append({"name": other, "label": first.get("label", first["name"])})
    else:
        item = copy.deepcopy(suite[where][draw(st.integers(0, len(suite[where]) - 1))])
        suite[where].insert(draw(st.integers(0, len(suite[where]))), item)


def same_settings_twice(draw: Draw, suite: dict[str, Any]) -> None:
    """Two entries that differ only in their name or label: the same cells twice, one experiment under two labels.

    Nothing excluded: leaving the pair out with [[exclude]] is the documented remedy.
    """
    suite.pop("exclude", None)
    where = draw(st.sampled_from(["tasks", "backbones", "strategies"]))
    item = copy.deepcopy(suite[where][draw(st.integers(0, len(suite[where]) - 1))])
    item["name" if where == "tasks" else "label"] = "fuzz-twin"
    suite[where].append(item)


UNSAFE_NAMES = ["", ".", "..", "../x", "x/..", "a/b", "/abs", "/", "a\x00b", "\x00", "x" * 300, "../../etc"]


def unsafe_name(draw: Draw, suite: dict[str, Any]) -> None:
    """A suite name that is no safe path part (the default output is results/<name>)."""
    suite["name"] = draw(st.sampled_from(UNSAFE_NAMES))
    suite.pop("output", None)


def unknown_baseline(draw: Draw, suite: dict[str, Any]) -> None:
    """A `baseline` that names no strategy label of the suite."""
    ids = [s.get("label", s["name"]) for s in suite["strategies"]]
    others = [s for s in STRATEGIES if s not in ids] + ["", "Scratch"]
    suite["baseline"] = draw(st.one_of(st.sampled_from(others), NONSENSE.filter(lambda n: n not in ids)))


def unknown_exclusion(draw: Draw, suite: dict[str, Any]) -> None:
    """An exclusion naming a task, backbone or strategy the suite does not have, or nothing at all."""
    field = draw(st.sampled_from(["task", "backbone", "strategy", "empty"]))
    if field == "empty":
        exclusion: dict[str, Any] = {}
    else:
        ids = {
            "task": [t["name"] for t in suite["tasks"]],
            "backbone": [b.get("label", b["name"]) for b in suite["backbones"]],
            "strategy": [s.get("label", s["name"]) for s in suite["strategies"]],
        }[field]
        exclusion = {field: draw(NONSENSE.filter(lambda n: n not in ids))}
    suite["exclude"] = [*suite.get("exclude", []), exclusion]


def bad_weights(draw: Draw, suite: dict[str, Any], workdir: Path) -> None:
    """Weights that are none of the allowed sources: an unknown stage, unpublished name, missing or unreadable file."""
    backbone = suite["backbones"][0]
    stages = [p["name"] for p in suite.get("pretrain", [])]
    garbage = workdir / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    choices = [
        draw(NONSENSE.map(lambda n: f"pretrain:{n}").filter(lambda w: w[9:] not in stages)),
        "IMAGENET9K_V9",
        "imagenet",
        "pretrain:",
        "",
        str(workdir / "missing.pt"),
        f"file:{workdir / 'missing.bin'}",
        str(garbage),
        str(workdir),
    ]
    backbone["weights"] = draw(st.sampled_from(choices))
    for strategy in suite["strategies"]:  # scratch ignores weights: let the strategy read them, same id
        if strategy["name"] == "scratch":
            strategy.update(name="full", label=strategy.get("label", "scratch"))


def bad_teacher(draw: Draw, suite: dict[str, Any], workdir: Path) -> None:
    """A distillation teacher that is not a backbone x strategy of the suite without a teacher, nor a readable file."""
    backbones = [b.get("label", b["name"]) for b in suite["backbones"]]
    strategy_ids = [s.get("label", s["name"]) for s in suite["strategies"]] + ["fuzz-teacher", "fuzz-student"]
    case = draw(st.sampled_from(["backbone", "strategy", "self", "checkpoint", "checkpoint_backbone"]))
    options: dict[str, Any] = {"teacher_backbone": backbones[0], "teacher_strategy": "fuzz-teacher"}
    if case == "backbone":
        options["teacher_backbone"] = draw(NONSENSE.filter(lambda n: n not in backbones))
    elif case == "strategy":
        options["teacher_strategy"] = draw(NONSENSE.filter(lambda n: n not in strategy_ids))
    elif case == "self":
        options["teacher_strategy"] = "fuzz-student"
    elif case == "checkpoint":
        options = {"teacher_backbone": "resnet18", "teacher_checkpoint": str(workdir / "missing-teacher.pt")}
    else:
        name = draw(NONSENSE.filter(lambda n: n not in BACKBONES))
        options = {"teacher_backbone": name, "teacher_checkpoint": str(workdir / "weights.pt")}
    suite["strategies"] += [
        {"name": "full", "label": "fuzz-teacher"},
        {"name": "distill", "label": "fuzz-student", "options": options},
    ]


def bad_device(draw: Draw, suite: dict[str, Any]) -> None:
    """A device that is none of auto, cpu, cuda, cuda:N, mps."""
    suite["device"] = draw(
        st.sampled_from(["tpu", "CPU", "", "cuda:", "cuda:x", "cuda:-1", "gpu", "cuda:0 ", "cuda:0,1"])
    )


def unicode_digit_device(draw: Draw, suite: dict[str, Any]) -> None:
    """`cuda:N` with N in non-ASCII digits (superscript, Arabic-Indic, fullwidth), which `str.isdigit` takes."""
    digits = st.sampled_from("\u00b2\u00b3\u0663\u0967\uff11\u2460")
    suite["device"] = "cuda:" + draw(st.text(digits, min_size=1, max_size=3))


def dangling_output(draw: Draw, suite: dict[str, Any], workdir: Path) -> None:
    """`output` (or a folder above it) is a symbolic link to nothing: the run could not make it."""
    link = workdir / f"dangling-{draw(st.integers(0, 10**6))}"
    if not link.is_symlink():
        link.symlink_to(workdir / "nowhere" / link.name)
    suite["output"] = str(link / "results" if draw(st.booleans()) else link)


def non_finite_number(draw: Draw, suite: dict[str, Any]) -> None:
    """inf, -inf or nan anywhere a number goes: a float setting, a component option, a list of them."""
    value = draw(st.sampled_from([math.inf, -math.inf, math.nan]))
    where = draw(st.sampled_from(["grad_clip", "lr", "task option", "strategy option", "list"]))
    if where in ("grad_clip", "lr"):
        set_training(draw, suite, where, value)
    elif where == "task option":
        suite["tasks"][0].setdefault("options", {})["fuzz_number"] = value
    elif where == "strategy option":
        _set_option(suite, "strategy", "lora", "dropout", value)
    else:
        suite["tasks"][0].setdefault("options", {})["aspect_ratios"] = [0.5, value]


def huge_integer(draw: Draw, suite: dict[str, Any]) -> None:
    """An integer of thousands of digits (past the 4300 Python converts) in a setting, a seed or an option."""
    value = 10 ** draw(st.integers(4300, 6000)) * draw(st.sampled_from([1, -1]))
    where = draw(st.sampled_from(["epochs", "seeds", "option"]))
    if where == "epochs":
        set_training(draw, suite, "epochs", value)
    elif where == "seeds":
        suite["seeds"] = [value]
    else:
        _set_option(suite, "strategy", "lora", "rank", value)


def _set_option(suite: dict[str, Any], where: str, owner: str, key: str, value: Any) -> None:
    """Give one strategy, task or dataset option `value`: `owner` is the strategy name or task kind."""
    if where == "strategy":
        suite["strategies"].append({"name": owner, "label": "fuzz-opt", "options": {key: value}})
    elif where == "task":
        suite["tasks"][0] = {
            "name": suite["tasks"][0]["name"],
            "kind": owner,
            "dataset": {"name": "shapes"},
            "options": {key: value},
        }
    else:
        suite["tasks"][0]["dataset"] = {"name": "shapes", "options": {key: value}}


#: (where, strategy name or task kind, option, a valid value) for options given the wrong type
TYPED_OPTIONS = [
    ("strategy", "lora", "rank", 4),
    ("strategy", "l2sp", "alpha", 0.1),
    ("strategy", "discriminative_lr", "head_lr_scale", 10.0),
    ("strategy", "partial", "freeze_stages", 1),
    ("task", "classification", "label_smoothing", 0.1),
    ("task", "detection", "fpn_channels", 64),
    ("task", "segmentation", "output_stride", 16),
    ("dataset", "shapes", "image_size", 32),
    ("dataset", "shapes", "train", 16),
    ("dataset", "shapes", "clutter", 0.5),
    ("dataset", "shapes", "seed", 1),
]

#: (where, strategy name or task kind, option, a value out of its range)
OUT_OF_RANGE_OPTIONS = [
    ("strategy", "lora", "rank", 0),
    ("strategy", "lora", "rank", 1025),
    ("strategy", "lora", "dropout", 1.0),
    ("strategy", "discriminative_lr", "stage_decay", 1.5),
    ("strategy", "gradual_unfreeze", "every_epochs", 0),
    ("strategy", "lora", "layers", ["attention"]),
    ("strategy", "bitfit", "batchnorm", "frozen"),
    ("task", "classification", "label_smoothing", 1.0),
    ("task", "detection", "fpn_stages", 0),
    ("task", "segmentation", "output_stride", 12),
    ("task", "detection", "min_size", 8),
    ("dataset", "shapes", "image_size", 8),
    ("dataset", "shapes", "image_size", 5000),
    ("dataset", "shapes", "max_objects", 17),
    ("dataset", "shapes", "clutter", -0.1),
    ("dataset", "shapes", "shapes", ["circle"]),
    ("dataset", "shapes", "shapes", ["circle", "blob"]),
]


def option_wrong_type(draw: Draw, suite: dict[str, Any]) -> None:
    """A component option of the wrong type (`rank = "4"`, `image_size = true`, `label_smoothing = "0.1"`)."""
    where, owner, key, good = draw(st.sampled_from(TYPED_OPTIONS))
    _set_option(suite, where, owner, key, draw(st.sampled_from([str(good), True])))


def option_out_of_range(draw: Draw, suite: dict[str, Any]) -> None:
    """A component option outside its range (`rank = 0`, `image_size = 8`, `output_stride = 12`)."""
    _set_option(suite, *draw(st.sampled_from(OUT_OF_RANGE_OPTIONS)))


SUITE_KEYS = {
    "name",
    "output",
    "seeds",
    "baseline",
    "device",
    "executor",
    "training",
    "pretrain",
    "tasks",
    "backbones",
    "strategies",
    "exclude",
}
TASK_KEYS = {"name", "kind", "dataset", "metric", "options", "training"}
BACKBONE_KEYS = {"name", "label", "weights", "options"}
STRATEGY_KEYS = {"name", "label", "options", "training"}
PRETRAIN_KEYS = {"name", "backbone", "kind", "dataset", "options", "training", "seed"}

#: mutation kind -> a function that breaks one documented rule of a valid suite, in place
MUTATIONS: dict[str, Callable[..., None]] = {
    f.__name__: f
    for f in (
        wrong_number_type,
        float_for_int,
        wrong_bool_type,
        wrong_choice_type,
        sweep_value_wrong_type,
        training_out_of_range,
        empty_sweep,
        duplicate_sweep_values,
        seeds_wrong_type,
        seeds_out_of_range,
        seeds_not_distinct_or_empty,
        top_level_wrong_type,
        structure_wrong_type,
        unknown_key_top,
        unknown_key_table,
        unknown_key_training,
        unknown_key_options,
        internal_key,
        unknown_plugin,
        unknown_metric,
        dataset_kind_mismatch,
        missing_required,
        empty_required_list,
        duplicate_label,
        same_settings_twice,
        unsafe_name,
        unknown_baseline,
        unknown_exclusion,
        bad_weights,
        bad_teacher,
        bad_device,
        unicode_digit_device,
        dangling_output,
        non_finite_number,
        huge_integer,
        option_wrong_type,
        option_out_of_range,
    )
}
NEEDS_WORKDIR = {"bad_weights", "bad_teacher", "dangling_output"}


# ---------------------------------------------------------------- the tests


@settings(FUZZ, max_examples=EXAMPLES["valid"])
@given(data=st.data())
def test_valid_suites_plan(workdir: Path, data: st.DataObject) -> None:
    suite = data.draw(valid_suites(workdir), label="suite")
    text = to_toml(suite)
    note(text)
    _, result = plan(workdir, text)
    assert_no_crash(result)
    assert result.exit_code == 0, f"a valid suite was refused: {result.stderr.strip()}"


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
@settings(FUZZ, max_examples=EXAMPLES["mutation"])
@given(data=st.data())
def test_rule_breaking_suites_are_refused(workdir: Path, kind: str, data: st.DataObject) -> None:
    suite = data.draw(valid_suites(workdir), label="valid suite")
    mutate = MUTATIONS[kind]
    if kind in NEEDS_WORKDIR:
        mutate(data.draw, suite, workdir)
    else:
        mutate(data.draw, suite)
    text = to_toml(suite)
    note(text)
    path, result = plan(workdir, text)
    assert_refused(path, result)


#: what byte-level mutations insert: TOML's syntax, quotes and escapes, newlines, non-ASCII, invalid UTF-8
INSERTS = [c.encode() for c in "[]{}=,.\"'\\#\n\r\t -+_:0123456789eExnaitrufl"] + [
    "é".encode(),
    "\u2028".encode(),
    b"\x00",
    b"\x7f",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b'"""',
    b"'''",
    b"[[",
    b"]]",
    b"\\u0000",
    b"\\uD800",
    b"nan",
    b"inf",
    b"1e999",
    b"99999999999999999999",
    b"1979-05-27",
    b"= [",
]


@st.composite
def byte_mutations(draw: Draw, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["insert", "delete", "replace"]))
        at_ = draw(st.integers(0, len(data)))
        chunk = draw(
            st.one_of(
                st.sampled_from(INSERTS),
                st.binary(min_size=1, max_size=3),
                st.text(string.printable, min_size=1, max_size=3).map(str.encode),
            )
        )
        length = draw(st.integers(1, 8))
        if operation == "insert":
            data[at_:at_] = chunk
        elif operation == "delete":
            del data[at_ : at_ + length]
        else:
            data[at_ : at_ + length] = chunk
    return bytes(data)


@settings(FUZZ, max_examples=EXAMPLES["bytes"])
@given(data=st.data())
def test_mangled_toml_never_crashes(workdir: Path, data: st.DataObject) -> None:
    suite = data.draw(valid_suites(workdir), label="suite")
    mangled = data.draw(byte_mutations(to_toml(suite).encode()), label="bytes")
    note(repr(mangled))
    path, result = plan(workdir, mangled)
    assert_no_crash(result)
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0], f"not one line naming the file: {result.stderr!r}"


def integral_floats_as_ints(value: Any) -> Any:
    """The suite with every whole float written as a TOML integer (`lr = 1.0` -> `lr = 1`)."""
    if isinstance(value, dict):
        return {k: integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral_floats_as_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


@settings(FUZZ, max_examples=EXAMPLES["spelling"])
@given(data=st.data())
def test_number_spelling_does_not_change_cells(workdir: Path, data: st.DataObject) -> None:
    """`lr = 1` is `lr = 1.0` (strict mode takes a TOML integer for a float): the same cells, the same keys."""
    suite = data.draw(valid_suites(workdir), label="suite")
    plans = []
    for variant in (suite, integral_floats_as_ints(suite)):
        text = to_toml(variant)
        note(text)
        _, result = plan(workdir, text, "--format", "json")
        assert_no_crash(result)
        assert result.exit_code == 0, result.stderr
        document = json.loads(result.stdout)
        plans.append([(c["setting"], c["key"]) for c in document["cells"]] + [p["key"] for p in document["pretrain"]])
    assert plans[0] == plans[1]
