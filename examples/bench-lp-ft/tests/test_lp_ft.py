"""Tests of the lp_ft strategy with bench's test helpers."""

from bench_lp_ft import LPFT
from typer.testing import CliRunner

from harness.cli import create_app
from harness.testing import train_briefly


def test_bench_plugins_lists_it() -> None:
    result = CliRunner().invoke(create_app(), ["plugins"])
    assert "lp_ft" in result.output and "bench-lp-ft" in result.output


def test_probe_epochs_train_only_the_new_parts() -> None:
    run = train_briefly(LPFT({"probe_epochs": 5}), "classification", steps=2)
    assert run.changed == run.names("head.")


def test_after_the_probe_everything_trains() -> None:
    # 2 steps per epoch: epoch 0 probes, epoch 1 fine-tunes everything
    run = train_briefly(LPFT({"probe_epochs": 1}), "classification", steps=4)
    assert run.changed == run.names()
