"""Tests of the surgical strategy with bench's test helpers."""

import pytest
from bench_surgical import Surgical
from typer.testing import CliRunner

from harness.cli import create_app
from harness.testing import train_briefly


def test_bench_plugins_lists_it() -> None:
    result = CliRunner().invoke(create_app(), ["plugins"])
    assert "surgical" in result.output and "bench-surgical" in result.output


@pytest.mark.parametrize("stage", [0, -1])
def test_only_the_chosen_stage_and_the_new_parts_train(stage: int) -> None:
    run = train_briefly(Surgical({"stage": stage}), "classification", steps=2)
    index = stage % len(run.model.backbone.stages)  # -1: the last stage
    trained = f"backbone.stages.{index}."
    assert run.changed == run.names(trained) | run.names("head.")
    assert all(name.startswith((trained, "head.")) for name in run.changed_buffers)  # BatchNorm statistics
    assert run.outcome.model is run.model  # the trained model is the one evaluated


def test_a_stage_the_backbone_does_not_have_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"stage = 7, but the backbone has 5 stages \(0 to 4\)"):
        train_briefly(Surgical({"stage": 7}), "classification", steps=1)
