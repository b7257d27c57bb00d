"""Without the ``fsspec`` extra (fsspec, s3fs, aiobotocore): the core, the botocore adapter and
``s3pool run`` work, and the fsspec layer says which extra to install.

The packages are hidden from subprocesses by modules of the same names, first on ``PYTHONPATH``,
that raise ``ImportError`` as a missing package does; a fresh install without the extra is
checked by ``test_install_beside_awscli.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s3pool_plugins.adapters.fsspec._require import MODULES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hidden(tmp_path: Path) -> Path:
    """A directory of stand-ins that make ``import fsspec`` (s3fs, aiobotocore) fail like a missing package."""
    for module in MODULES:
        missing = f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n"
        (tmp_path / f"{module}.py").write_text(missing)
    return tmp_path


def _env(hidden: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(hidden), str(ROOT)])
    env["S3POOL_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90)


def test_the_stand_ins_really_hide_the_packages(hidden: Path) -> None:
    done = _python("import s3fs", _env(hidden))
    assert done.returncode == 1 and "No module named 's3fs'" in done.stderr


@pytest.mark.parametrize(
    "statement",
    [
        "from s3pool_plugins import install_fsspec",
        "import s3pool_plugins.adapters.fsspec",
        "import s3pool_plugins.adapters.fsspec.filesystem",
        "import s3pool_plugins; s3pool_plugins.uninstall_fsspec",
        "from s3pool_plugins import installed_fsspec_pool",
    ],
)
def test_the_fsspec_layer_names_the_extra_to_install(hidden: Path, statement: str) -> None:
    code = f"""
try:
    {statement}
except ImportError as error:
    print(type(error).__name__, error)
else:
    print("imported")
"""
    done = _python(code, _env(hidden))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("MissingExtra "), done.stdout
    assert "pip install 's3pool-plugins[fsspec]'" in done.stdout and "fsspec cannot be imported" in done.stdout


def test_the_pool_protocol_says_which_extra_to_install(hidden: Path) -> None:
    # fsspec itself is installed (another package brought it), s3fs is not: fsspec finds the pool:: entry
    # point, and the error it raises carries the layer's own as its cause.
    (hidden / "fsspec.py").unlink()
    code = """
import fsspec
try:
    fsspec.filesystem("pool")
except ImportError as error:
    print(type(error).__name__, error, "| cause:", type(error.__cause__).__name__, error.__cause__)
"""
    done = _python(code, _env(hidden))
    assert done.returncode == 0, done.stderr
    assert "cause: MissingExtra" in done.stdout and "s3pool-plugins[fsspec]" in done.stdout, done.stdout
    assert "s3fs cannot be imported" in done.stdout


def test_the_core_and_the_botocore_adapter_need_no_fsspec(hidden: Path, local_s3, s3_bucket) -> None:
    code = f"""
import sys, boto3
from botocore.config import Config
from s3pool_plugins import OperationsPool, install
session = boto3.session.Session()
pool = install(session, OperationsPool(concurrency=2, load_entrypoints=False))
s3 = session.client("s3", config=Config(s3={{"addressing_style": "path"}}))
s3.put_object(Bucket={s3_bucket!r}, Key="k", Body=b"v")
assert s3.get_object(Bucket={s3_bucket!r}, Key="k")["Body"].read() == b"v"
assert not any(name.split(".")[0] in {MODULES!r} for name in sys.modules), sorted(sys.modules)
print(pool.stats().succeeded)
pool.shutdown()
"""
    done = _python(code, _env(hidden, local_s3.subprocess_env()))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["2"]


def test_s3pool_run_needs_no_fsspec(hidden: Path, local_s3, s3_bucket, tmp_path: Path) -> None:
    program = f"import boto3; boto3.client('s3').put_object(Bucket={s3_bucket!r}, Key='run', Body=b'v')"
    report = tmp_path / "report.json"
    argv = ["-m", "s3pool_plugins", "run", "--no-otel", "--report", str(report), "--", sys.executable, "-c", program]
    done = subprocess.run(
        [sys.executable, *argv],
        env=_env(hidden, local_s3.subprocess_env()),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["calls"] == 1 and data["succeeded"] == 1


def test_a_star_import_needs_no_fsspec(hidden: Path) -> None:
    done = _python("from s3pool_plugins import *\nprint(OperationsPool.__name__)", _env(hidden))
    assert done.returncode == 0 and done.stdout == "OperationsPool\n", done.stderr[-3000:]
