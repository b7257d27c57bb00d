"""Every ```python example in README.md and docs/ runs, top to bottom, per file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return FENCE.findall(path.read_text())


def test_docs_have_examples() -> None:
    counts = {path.name: len(python_blocks(path)) for path in DOCS}
    assert all(count >= 1 for count in counts.values()), counts
    assert sum(counts.values()) >= 12, counts


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_examples_run(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3POOL_DISABLE_PLUGIN_AUTOLOAD", "1")
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for number, block in enumerate(python_blocks(path), 1):
        code = compile(block, f"{path.name}[example {number}]", "exec")
        exec(code, namespace)
