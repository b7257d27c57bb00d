"""Importing the package is cheap: each public name loads its module on first use, with the API unchanged."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import s3pool_plugins

PACKAGE = Path(s3pool_plugins.__file__)

HEAVY = ("botocore", "boto3", "fsspec", "s3fs", "pluggy", "asyncio", "s3pool_plugins.core", "s3pool_plugins.hooks")
"""Modules (and their submodules) a bare ``import s3pool_plugins`` must not load."""


def _loaded_after(code: str) -> list[str]:
    """The modules among :data:`HEAVY` that running ``code`` loads in a fresh interpreter (not those its start-up
    already loaded, such as a ``.pth`` file's imports)."""
    probe = (
        "import sys\nbefore = set(sys.modules)\n"
        f"{code}\nimport json\n"
        f"heavy = {HEAVY!r}\n"
        "new = set(sys.modules) - before\n"
        "print(json.dumps(sorted(m for m in new if any(m == h or m.startswith(h + '.') for h in heavy))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_package_loads_no_heavy_module() -> None:
    assert _loaded_after("import s3pool_plugins") == []


def test_a_name_loads_its_own_module_only_when_used() -> None:
    loaded = _loaded_after("import s3pool_plugins\ns3pool_plugins.ConfigurationError")
    assert loaded == []  # errors need nothing of the core
    loaded = _loaded_after("from s3pool_plugins import OperationsPool")
    assert "s3pool_plugins.core.pool" in loaded
    assert not [m for m in loaded if m.split(".")[0] in ("botocore", "boto3", "fsspec", "s3fs")]
    loaded = _loaded_after("from s3pool_plugins import install")
    assert "botocore" in loaded  # the botocore adapter, on first use of its name


def test_every_public_name_is_the_object_of_its_module() -> None:
    import importlib

    table = s3pool_plugins._EXPORTS
    for module, names in table.items():
        defining = importlib.import_module(module, "s3pool_plugins")
        for name in names:
            assert getattr(s3pool_plugins, name) is getattr(defining, name), name
    exported = {name for names in table.values() for name in names}
    assert set(s3pool_plugins.__all__) - {"__version__"} <= exported
    assert set(s3pool_plugins.__all__) <= set(dir(s3pool_plugins))
    namespace: dict[str, object] = {}
    exec("from s3pool_plugins import *", namespace)
    assert set(s3pool_plugins.__all__) <= set(namespace)


def test_type_checkers_see_the_names_the_package_loads() -> None:
    """The ``if TYPE_CHECKING:`` imports (what mypy and IDEs read) name the same modules and names as the table."""
    tree = ast.parse(PACKAGE.read_text())
    guarded = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    seen: dict[str, set[str]] = {}
    for node in guarded.body:
        assert isinstance(node, ast.ImportFrom)
        seen.setdefault("." * node.level + (node.module or ""), set()).update(a.name for a in node.names)
    lazy = {module: set(names) for module, names in s3pool_plugins._EXPORTS.items()}
    assert seen == lazy  # every lazily loaded name is typed, the adapters' too
    public = set(s3pool_plugins.__all__) - {"__version__"}
    adapters = {name for module in s3pool_plugins._ADAPTERS for name in seen[module]}
    assert public == {name for names in seen.values() for name in names} - adapters  # star imports need no extra


def test_the_fsspec_adapters_public_names_are_the_packages() -> None:
    from s3pool_plugins import OperationsPool, install_fsspec, installed_fsspec_pool, uninstall_fsspec

    assert installed_fsspec_pool() is None
    with OperationsPool(concurrency=1, load_entrypoints=False) as pool:
        install_fsspec(pool)
        try:
            assert installed_fsspec_pool() is pool
        finally:
            uninstall_fsspec()
    assert installed_fsspec_pool() is None


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="'no_such_name'"):
        s3pool_plugins.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(s3pool_plugins, "no_such_name")
