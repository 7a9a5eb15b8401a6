"""The line that installs an optional extra, for the way this package was installed.

The distribution is `finetune-bench` (the name `bench` on the package index is another project);
the command stays `bench` and the import names `harness` and `bench_plugins`. From a checkout
(an editable install, or the source tree on the path) the extra comes from that checkout.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path
from urllib.parse import unquote, urlparse

#: this project's name on the package index
DISTRIBUTION = "finetune-bench"
#: the name it had before, still found in environments installed from older checkouts
_FORMER_NAMES = ("bench",)


def install_hint(extra: str) -> str:
    """`pip install -e "<checkout>[extra]"` for a checkout, else `pip install "finetune-bench[extra]"`."""
    checkout = _checkout()
    if checkout is None:
        return f'pip install "{DISTRIBUTION}[{extra}]"'
    where = "." if Path.cwd().resolve() == checkout else str(checkout)
    return f'pip install -e "{where}[{extra}]"'


@lru_cache(maxsize=1)
def _checkout() -> Path | None:
    """The source tree this package runs from, or None when it was installed from an archive or the index."""
    dist = _own_distribution()
    editable = _editable_root(dist) if dist is not None else None
    if editable is not None:
        return editable
    root = Path(__file__).resolve().parents[1]  # imported from a source tree on the path (cwd, PYTHONPATH)
    return root if (root / "pyproject.toml").is_file() else None


def _own_distribution() -> Distribution | None:
    for name in (DISTRIBUTION, *_FORMER_NAMES):
        try:
            found = distribution(name)
        except PackageNotFoundError:
            continue
        if any(ep.value == "harness.cli:main" for ep in found.entry_points):
            return found
    return None


def _editable_root(dist: Distribution) -> Path | None:
    """The directory of an editable install (PEP 610 `direct_url.json`), or None."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not (record.get("dir_info") or {}).get("editable"):
        return None
    url = urlparse(record.get("url", ""))
    if url.scheme != "file":
        return None
    return Path(os.path.normpath(unquote(url.path))).resolve()
