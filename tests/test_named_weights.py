"""Published weights (torchvision's enums) by name: read from the torch hub cache, a clear error when absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import models
from typer.testing import CliRunner

from harness.assembly import load_weights
from harness.cli import create_app
from harness.driver import run_suite
from harness.errors import SuiteError
from harness.store import Store, load_results
from harness.suite import parse_suite
from tests.conftest import tiny_suite


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> Path:
    """An empty torch hub cache, and no network: downloading fails as it does offline."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))

    def offline(url, *args, **kwargs):
        raise OSError(f"no network to fetch {url}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def _cache_resnet18(hub: Path) -> dict[str, torch.Tensor]:
    """A stand-in for torchvision's resnet18 ImageNet file, in its layout and under its name."""
    torch.manual_seed(7)
    state = models.resnet18().state_dict()
    (hub / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(state, hub / "checkpoints" / "resnet18-f37072fd.pth")
    return state


def test_torchvision_backbones_publish_their_enums(registry) -> None:
    offered = registry.create("backbone", "resnet50").named_weights()
    assert set(offered) == {"IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT"}
    assert offered["DEFAULT"].name == "IMAGENET1K_V2"
    assert offered["DEFAULT"].url == models.ResNet50_Weights.DEFAULT.url
    assert registry.create("backbone", "mobilenet_v3_large").named_weights()["DEFAULT"].filename.startswith("mobilenet")


def test_cached_weights_load_by_name(registry, hub: Path, tmp_path: Path) -> None:
    state = _cache_resnet18(hub)
    plugin = registry.create("backbone", "resnet18")
    module = plugin.build()
    load_weights(plugin, module, "named:IMAGENET1K_V1@resnet18-f37072fd.pth", Store(tmp_path))
    assert torch.equal(module.stages[0][0].weight, state["conv1.weight"])
    assert torch.equal(module.stages[4][1].bn2.running_var, state["layer4.1.bn2.running_var"])

    data = tiny_suite(
        tmp_path / "out", backbones=[{"name": "resnet18", "weights": "DEFAULT"}], strategies=[{"name": "linear_probe"}]
    )
    data["tasks"] = data["tasks"][:1]
    data["training"] = {**data["training"], "max_steps": 1}
    suite = parse_suite(data, "s.toml", registry)
    run_suite(suite, registry)
    frame = load_results(tmp_path / "out")
    assert list(frame["status"]) == ["ok"]
    cell = Store(tmp_path / "out").load(frame["key"][0])
    assert cell.settings["backbone"]["weights"] == "named:IMAGENET1K_V1@resnet18-f37072fd.pth"  # DEFAULT resolved


def test_missing_weights_offline_fail_the_cell_naming_file_and_place(registry, hub: Path, tmp_path: Path) -> None:
    data = tiny_suite(
        tmp_path / "out", backbones=[{"name": "resnet18", "weights": "IMAGENET1K_V1"}], strategies=[{"name": "full"}]
    )
    data["tasks"] = data["tasks"][:1]
    run_suite(parse_suite(data, "s.toml", registry), registry)
    (reason,) = load_results(tmp_path / "out")["reason"]
    expected = hub / "checkpoints" / "resnet18-f37072fd.pth"
    assert reason.startswith("BenchError: weights IMAGENET1K_V1 are not cached and could not be downloaded")
    assert (
        f"put resnet18-f37072fd.pth (from https://download.pytorch.org/models/resnet18-f37072fd.pth) at {expected}"
        in reason
    )


def test_unknown_weights_name_is_a_suite_error(registry, tmp_path: Path) -> None:
    data = tiny_suite(tmp_path, backbones=[{"name": "resnet18", "weights": "IMAGENET1K_V9"}])
    with pytest.raises(SuiteError) as error:
        parse_suite(data, "s.toml", registry)
    assert str(error.value) == (
        "s.toml: backbones[0].weights: resnet18 has no weights named 'IMAGENET1K_V9'; allowed: IMAGENET1K_V1, DEFAULT"
    )


def test_bench_weights_lists_and_says_what_is_cached(hub: Path) -> None:
    _cache_resnet18(hub)
    runner = CliRunner()
    listed = runner.invoke(create_app(), ["weights", "resnet18", "resnet50"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[1].startswith("    cache: ") and lines[1].endswith("/checkpoints")  # a long path on its own line
    assert all(len(line) <= 80 for line in lines[2:])  # piped: plain records within 80 columns
    r18 = lines.index("resnet18  IMAGENET1K_V1  cached")
    assert lines[r18 + 1] == "    file: resnet18-f37072fd.pth"  # the name to copy, whole
    r50 = lines.index("resnet50  IMAGENET1K_V2  not cached")
    assert lines[r50 + 1] == "    file: resnet50-11ad3fa6.pth"
    fetch = runner.invoke(create_app(), ["weights", "resnet50", "--fetch"])
    assert fetch.exit_code == 2
    assert "weights IMAGENET1K_V2 are not cached and could not be downloaded" in fetch.output


def test_plain_records_keep_every_value_whole_within_80_columns() -> None:
    from harness.records import plain_records

    long_value = "a-very-long-package-name-that-cannot-be-broken-anywhere-at-all-" + "x" * 40
    text = plain_records(
        [("strategy", "mine", long_value, "one two three " * 12)], 2, ("kind", "name", "provided by", "what")
    )
    lines = text.splitlines()
    assert lines[0] == "strategy  mine"
    assert long_value in text  # a word longer than the line stands alone, unbroken
    assert all(len(line) <= 80 for line in lines if long_value not in line)
    what = lines.index(next(line for line in lines if line.startswith("    what: ")))
    assert " ".join(w for line in lines[what:] for w in line.split()) == "what: " + ("one two three " * 12).strip()
