"""`s3pool run` warns, before the program starts, when the program runs on a Python that cannot import the package.

The other Python is a real one: a throwaway virtualenv (``venv --without-pip``)
in the test's folder, which has nothing installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from s3pool_plugins.cli import main
from s3pool_plugins.cli.interpreter import interpreter_of, interpreter_warning, shebang


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a folder without the package in it (``python -c`` puts the current folder on sys.path)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def other_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new, empty virtualenv."""
    folder = tmp_path_factory.mktemp("other-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    assert python.exists()
    return python


def _environment(other_python: Path) -> dict[str, str]:
    """This process's environment without PYTHONPATH, with the other virtualenv first on PATH."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment["PATH"] = f"{other_python.parent}{os.pathsep}{environment.get('PATH', os.defpath)}"
    return environment


def _script(folder: Path, name: str, first_line: str, body: str = "print('the program ran')") -> Path:
    path = folder / name
    path.write_text(f"{first_line}\n{body}\n")
    path.chmod(0o755)
    return path


def test_the_other_python_really_cannot_import_the_package(other_python: Path) -> None:
    environment = _environment(other_python)
    done = subprocess.run(
        [str(other_python), "-c", "import s3pool_plugins"],
        env=environment,
        capture_output=True,
        cwd=other_python.parent,
    )
    assert done.returncode != 0 and b"No module named 's3pool_plugins'" in done.stderr


def test_the_interpreter_is_read_from_the_name_or_the_shebang(tmp_path: Path, other_python: Path) -> None:
    environment = _environment(other_python)
    other_bin = other_python.parent
    direct = _script(tmp_path, "direct", f"#!{other_python}")
    assert interpreter_of([str(direct)], environment) == str(other_python)
    with_env = _script(tmp_path, "with-env", "#!/usr/bin/env python3")
    assert interpreter_of([str(with_env), "ls"], environment) == str(other_bin / "python3")
    split = _script(tmp_path, "split", "#!/usr/bin/env -S python3 -u")
    assert interpreter_of([str(split)], environment) == str(other_bin / "python3")
    assigned = _script(tmp_path, "assigned", "#!/usr/bin/env -S -i LANG=C python3 -X utf8")
    assert interpreter_of([str(assigned)], environment) == str(other_bin / "python3")
    assert interpreter_of(["python3", "-m", "awscli", "s3", "ls"], environment) == str(other_bin / "python3")
    assert interpreter_of([str(other_python), "job.py"], environment) == str(other_python)
    shell = _script(tmp_path, "shell", "#!/bin/sh", "echo hi")
    assert interpreter_of([str(shell)], environment) is None  # not evidently Python: never run to find out
    plain = tmp_path / "plain"
    plain.write_bytes(b"\x7fELF\x02\x01")
    plain.chmod(0o755)
    assert shebang(str(plain)) is None and interpreter_of([str(plain)], environment) is None
    assert interpreter_of(["s3pool-no-such-program"], environment) is None


def test_a_program_on_another_python_gets_a_warning_that_names_it_and_the_fixes(
    tmp_path: Path, other_python: Path
) -> None:
    environment = _environment(other_python)
    program = _script(tmp_path, "aws", "#!/usr/bin/env python3")
    warning = interpreter_warning([str(program), "s3", "ls"], environment)
    assert warning is not None
    lines = warning.splitlines()
    interpreter = str(other_python.parent / "python3")
    assert f"runs on {interpreter} (its #! line), which cannot import s3pool_plugins" in lines[0]
    assert f"{interpreter} -m pip install s3pool-plugins" in lines[1]
    assert f"-- {sys.executable} -m awscli s3 ls" in lines[2]  # aws: the same command on this Python
    script = _script(tmp_path, "export.py", f"#!{other_python}")
    warning = interpreter_warning([str(script), "--day", "1"], environment)
    assert warning is not None and f"-- {sys.executable} {script} --day 1" in warning
    warning = interpreter_warning([str(other_python), "-m", "awscli"], environment)
    assert warning is not None and f"-- {sys.executable} -m awscli" in warning and "#!" not in warning


def test_no_warning_when_the_program_can_import_the_package(tmp_path: Path, other_python: Path) -> None:
    environment = _environment(other_python)
    ours = _script(tmp_path, "ours", f"#!{sys.executable}")
    assert interpreter_warning([str(ours)], environment) is None
    shell = _script(tmp_path, "shell", "#!/bin/sh", "echo hi")
    assert interpreter_warning([str(shell)], environment) is None
    # The other Python with the package and its dependencies on its PYTHONPATH imports it: no warning.
    import s3pool_plugins

    paths = [str(Path(s3pool_plugins.__file__).parent.parent), sysconfig.get_paths()["purelib"]]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    other = _script(tmp_path, "other", f"#!{other_python}")
    assert interpreter_warning([str(other)], environment) is None


def test_s3pool_run_warns_before_the_program_starts_and_still_runs_it(
    tmp_path: Path, other_python: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    program = _script(tmp_path, "job", "#!/usr/bin/env python3", "import sys; print('the program ran'); sys.exit(3)")
    monkeypatch.setenv("PATH", f"{other_python.parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
    assert main(["run", "--", str(program)]) == 3  # not blocked: the program ran, its status passed through
    captured = capfd.readouterr()
    assert "the program ran" in captured.out
    assert f"s3pool run: warning: {program} runs on {other_python.parent / 'python3'}" in captured.err
    assert captured.err.index("s3pool run: warning:") < captured.err.index("exited with status 3")
