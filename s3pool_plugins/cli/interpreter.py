"""Which Python a program of ``s3pool run`` runs on, and whether that Python can import this package.

``s3pool run`` pools a program through botocore's plugin variable, which
works only in a Python that can import ``s3pool_plugins``. A program such
as ``aws`` may run on another one (a system Python, another virtualenv,
pipx): it would run unpooled. :func:`interpreter_of` finds the program's
Python from its name (``python3 -m awscli``) or its ``#!`` line (also
``#!/usr/bin/env python3`` and ``#!/usr/bin/env -S python3 -u``), and
:func:`interpreter_warning` says, before the program starts, when that
Python cannot import the package, and what to do about it.

Only programs that are evidently Python (an interpreter named ``python``,
``python3``, ``python3.12``, ``pypy3`` ...) are checked: nothing else is
ever run to find out.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

CHECK_TIMEOUT = 5.0
"""Seconds the import check of another interpreter may take; beyond, it counts as unknown (no warning)."""

_PYTHON_NAME = re.compile(r"(python|pypy)(\d+(\.\d+)*)?([a-z]*)?(\.exe)?", re.IGNORECASE)
_SHEBANG_LENGTH = 4096


def find_program(name: str, environment: Mapping[str, str]) -> str | None:
    """The executable ``name`` resolves to with the program's ``PATH``, or None."""
    if os.sep in name or (os.altsep is not None and os.altsep in name):
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name, path=environment.get("PATH", os.defpath))


def is_python(path: str) -> bool:
    """True when the file name of ``path`` is that of a Python interpreter (``python3.12``, ``pypy3`` ...)."""
    return _PYTHON_NAME.fullmatch(os.path.basename(path)) is not None


def shebang(path: str) -> list[str] | None:
    """The words of the ``#!`` line of the file ``path`` (interpreter first), or None when it has none."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(_SHEBANG_LENGTH)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace").strip()
    words = line.split()
    return words or None


def interpreter_of(command: Sequence[str], environment: Mapping[str, str]) -> str | None:
    """The Python interpreter ``command`` runs on (a path), or None when it is not evidently Python.

    ``command[0]`` is resolved with the program's ``PATH``. A Python named
    directly (``python3 -m awscli``, ``/opt/venv/bin/python script.py``) is
    its own interpreter; otherwise the program's ``#!`` line names it, also
    through ``env`` (options, ``NAME=value`` assignments and ``-S``, as the
    kernel hands the rest of the line to ``env`` as one argument).
    """
    program = find_program(command[0], environment) if command else None
    if program is None:
        return None
    if is_python(program):
        return program
    words = shebang(program)
    if words is None:
        return None
    interpreter, arguments = words[0], words[1:]
    if os.path.basename(interpreter) == "env":
        interpreter_name = _env_command(arguments)
        if interpreter_name is None:
            return None
        resolved = find_program(interpreter_name, environment)
        return resolved if resolved is not None and is_python(resolved) else None
    return interpreter if is_python(interpreter) and os.path.isfile(interpreter) else None


def _env_command(arguments: Sequence[str]) -> str | None:
    """The command ``env`` runs for the rest of a ``#!`` line (``arguments``, as the line split them)."""
    words = list(arguments)
    index = 0
    while index < len(words):
        word = words[index]
        if word in ("-S", "--split-string") or word.startswith("-S"):
            rest = [word[2:]] if word.startswith("-S") and len(word) > 2 else []
            try:
                split = shlex.split(" ".join(rest + words[index + 1 :]))
            except ValueError:
                return None
            return _env_command(split)
        if word in ("-u", "--unset", "-C", "--chdir"):
            index += 2
            continue
        if word.startswith("-") or ("=" in word and not word.startswith("=")):
            index += 1
            continue
        return word
    return None


def can_import_package(interpreter: str, environment: Mapping[str, str]) -> bool | None:
    """Whether ``interpreter``, with ``environment``, can import ``s3pool_plugins``; None when unknown."""
    if os.path.abspath(interpreter) == os.path.abspath(sys.executable):
        return True
    try:
        done = subprocess.run(
            [interpreter, "-c", "import s3pool_plugins"],
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=CHECK_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.returncode == 0


def interpreter_warning(command: Sequence[str], environment: Mapping[str, str]) -> str | None:
    """A warning for stderr when ``command`` runs on a Python that cannot import this package, else None.

    The warning names that Python and two fixes: install the package into
    it, or run the program on the Python of this command.
    """
    interpreter = interpreter_of(command, environment)
    if interpreter is None or can_import_package(interpreter, environment) is not False:
        return None
    name = command[0]
    program = find_program(name, environment) or name
    if os.path.basename(program) == "aws":
        instead = [sys.executable, "-m", "awscli", *command[1:]]
    elif is_python(program):
        instead = [sys.executable, *command[1:]]
    else:
        instead = [sys.executable, program, *command[1:]]
    how = "" if is_python(program) else " (its #! line)"
    return "\n".join(
        [
            f"s3pool run: warning: {name} runs on {interpreter}{how}, which cannot import s3pool_plugins: "
            "its S3 calls will not be pooled.",
            f"  Install s3pool-plugins into that Python: {shlex.quote(interpreter)} -m pip install s3pool-plugins",
            f"  or run the program on this one: s3pool run [options] -- {shlex.join(instead)}",
        ]
    )
