"""CI runs exactly the test line that the README gives new users."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_test_line() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```bash\n(.*pytest.*)\n```", readme)
    assert match, "README quickstart has no bash block with the test line"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_line() -> None:
    line = readme_test_line()
    ci_lines = [raw.strip() for raw in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert line in ci_lines


def test_ci_treats_no_tests_as_failure() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert '"$status" -eq 5' in script and "exit 1" in script
