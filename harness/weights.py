"""Where a backbone's initial weights come from.

Sources, as written in a suite's `weights` key:
- ``none``: random initialisation (training from scratch);
- ``pretrain:NAME``: the checkpoint of the suite's pretraining stage NAME;
- a path to a local checkpoint (``.pt``/``.pth``), read with ``torch.load(weights_only=True)``,
  either in the `stages.*` layout bench writes or in the backbone's native (torchvision) layout;
- a name the backbone publishes (``IMAGENET1K_V2``, ``DEFAULT``): torchvision's weight enums,
  read from the torch hub cache, downloaded into it when missing and the network allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from harness.components import Backbone, BackboneModule, NamedWeights
from harness.errors import BenchError
from harness.store import sha256_of

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


@dataclass(frozen=True)
class WeightsSource:
    kind: str  # "none" | "pretrain" | "file" | "named"
    value: str = ""


def parse_weights(text: str) -> WeightsSource:
    if text == "none":
        return WeightsSource("none")
    if text.startswith("pretrain:") and len(text) > len("pretrain:"):
        return WeightsSource("pretrain", text.split(":", 1)[1])
    if text.startswith("file:"):
        return WeightsSource("file", text.split(":", 1)[1])
    if text.startswith("named:"):  # a cell's identity of published weights: named:NAME@FILENAME
        return WeightsSource("named", text.split(":", 1)[1].split("@", 1)[0])
    if text.endswith(CHECKPOINT_SUFFIXES):
        return WeightsSource("file", text)
    if text.replace("_", "").isalnum() and text.upper() == text:
        return WeightsSource("named", text)
    raise ValueError(
        f"unknown weights source {text!r}; allowed: 'none', 'pretrain:NAME', a name the backbone publishes "
        f"(e.g. 'DEFAULT', 'IMAGENET1K_V1'), or a checkpoint path ending in {', '.join(CHECKPOINT_SUFFIXES)}"
    )


def hub_path(weights: NamedWeights) -> Path:
    """Where the torch hub cache keeps (or would keep) these weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.filename


def resolve_named(backbone: Backbone, name: str) -> NamedWeights:
    """The published weights `name` (or `DEFAULT`) of `backbone`; ValueError listing what it offers."""
    offered = backbone.named_weights()
    if name not in offered:
        allowed = ", ".join(offered) or "none (this backbone publishes no weights)"
        raise ValueError(f"{backbone.name} has no weights named {name!r}; allowed: {allowed}")
    return offered[name]


def fetch_named(weights: NamedWeights) -> Path:
    """The cached file of `weights`, downloading it (hash-checked) when it is not cached yet."""
    path = hub_path(weights)
    if path.is_file():
        return path
    try:
        torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True, weights_only=True)
    except Exception as exc:
        raise BenchError(
            f"weights {weights.name} are not cached and could not be downloaded ({type(exc).__name__}: {exc}); "
            f"put {weights.filename} (from {weights.url}) at {path}, or run `bench weights --fetch` where "
            "the network is reachable"
        ) from None
    return path


def file_digest(path: Path) -> str:
    """Content hash of a checkpoint, so a changed file is a different cell."""
    return sha256_of(path)[:16]


def file_identity(text: str) -> str:
    """A checkpoint as it goes into a cell key: `file:PATH#DIGEST` (a changed file is a new cell)."""
    path = Path(text).expanduser()  # relative paths: to the working directory, like `output`
    digest = file_digest(path) if path.is_file() else "missing"
    return f"file:{path}#{digest}"


def identity_path(identity: str) -> Path:
    """The file a `file_identity` names."""
    return Path(identity.removeprefix("file:").rsplit("#", 1)[0])


def check_checkpoint(text: str) -> None:
    """ValueError unless `text` names a regular file that reads as a checkpoint (a state dict).

    Run when a suite is loaded, so a missing or broken file stops the suite before anything runs.
    Safetensors files: their header is read; others: `torch.load(weights_only=True)`,
    memory-mapped where the file's format allows.
    """
    path = Path(text).expanduser()
    try:
        exists, regular = path.exists(), path.is_file()
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot be read: {exc}") from None
    if not exists:
        raise ValueError(f"no such file: {text}")
    if not regular:
        raise ValueError(f"not a regular file: {text}")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt"):
                return
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{text} is not a readable checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{text} is not a checkpoint: a state dict was expected, got {type(state).__name__}")


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BenchError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BenchError(f"{path}: not a state dict (got {type(state).__name__})")
    return state


def first_mismatch(exc: RuntimeError) -> str:
    """The first shape mismatch of a failed `load_state_dict`, not the whole list."""
    return next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))


def load_into(backbone: Backbone, module: BackboneModule, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load `state` into `module`, converting from the backbone's native layout if needed."""
    if not all(k.startswith("stages.") for k in state):
        state = backbone.convert_state_dict(state)
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise BenchError(
            f"{origin}: checkpoint does not fit backbone {backbone.name!r}: {first_mismatch(exc)}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise BenchError(
            f"{origin}: checkpoint does not fit backbone {backbone.name!r} "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
