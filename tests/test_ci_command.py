"""CI runs exactly the test line that the README gives new users, as its last command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_test_line() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```bash\n(.*pytest.*)\n```", readme)
    assert match, "README quickstart has no bash block with the test line"
    return match.group(1).strip()


def script_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_ci_ends_with_the_readme_test_line() -> None:
    # Last, so the script's exit status is pytest's: a failure or exit 5 (no tests) fails CI.
    assert script_commands()[-1] == readme_test_line()


def test_ci_does_not_mask_failures() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "|| true" not in script
