#!/usr/bin/env python
"""Run s3fs's own test suite plain, under ``install_fsspec()`` and through ``pool::``; compare.

The suite is the one of the installed s3fs release: its sdist is taken from
the package index (``pip download --no-deps --no-binary :all: s3fs==X``)
into a temporary folder and its tests run from there, unedited, with the
pytest plugin :mod:`s3fs_routes` choosing the route (see its docstring).
The suite starts its own moto servers on ports 5555 and 5556, so the three
runs go one after the other unless ``--parallel`` gives each its own
network, and two runs of this script on one machine cannot overlap.

Prints per route the counts of passed, failed, skipped ... tests and every
test that plain s3fs passes and the route does not. Such a test that is
not an expected difference is run once more alone, through its route: the
suite has tests that fail on a loaded machine (plain s3fs fails one in
most runs here), and a test that passes when run again is listed as a
flake, not a difference. Exit status: 0 when each test that still differs
is in :data:`EXPECTED_DIFFERENCES` (with its reason), 1 otherwise, 2 for
bad arguments or a suite that could not be fetched or run.

With ``--parallel`` the routes run at once, each in a Linux network
namespace of its own (:mod:`isolated_network`), so their moto servers do
not collide; where namespaces cannot be made (not root, no ``ip``) they run
one after the other, as without it.

Usage: ``python compat/run_s3fs_suite.py [--routes plain,install,pool]
[--keep DIR [--reuse]] [-k EXPRESSION] [--sdist FILE] [--parallel]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path

import isolated_network

HERE = Path(__file__).resolve().parent
PASSING = ("passed", "xfailed")
"""Outcomes that count as passing a test plain s3fs passes."""

TEST_FILES = ("s3fs/tests/test_s3fs.py", "s3fs/tests/test_mapping.py", "s3fs/tests/derived/s3fs_test.py")
ROUTES = ("plain", "install", "pool")

EXPECTED_DIFFERENCES: dict[tuple[str, str], str] = {
    ("pool", "s3fs/tests/test_s3fs.py::test_fsspec_url_to_fs_compatability"): (
        "asserts isinstance(url_to_fs('s3://...')[0], type(s3)): the pool:: route hands the test a "
        "PooledFileSystem, which wraps any filesystem and so is no S3FileSystem, while fsspec builds a plain "
        "S3FileSystem for the s3:// URL (install_fsspec() passes it: there both are PooledS3FileSystem)"
    ),
    ("pool", "s3fs/tests/test_s3fs.py::test_copy_managed"): (
        "calls s3fs's private coroutine _copy_managed on the filesystem it is given: the pool:: wrapper forwards "
        "s3fs's public names only, so that fsspec's and Python's probes of private attributes stay the wrapper's "
        "(install_fsspec() passes it: there the filesystem is an S3FileSystem)"
    ),
    ("pool", "s3fs/tests/test_s3fs.py::test_invalidate_cache"): (
        "calls s3fs's private coroutine _call_s3 on the filesystem it is given (see test_copy_managed)"
    ),
    ("install", "s3fs/tests/test_s3fs.py::test_multiple_objects"): (
        "asserts that S3FileSystem(<the fixture's options>) has a session right after s3.connect(): in plain s3fs "
        "that is the fixture's own cached instance. The install route hands the test what fsspec.filesystem('s3') "
        "gives (a PooledS3FileSystem, cached apart from s3fs's class), so the directly made S3FileSystem is a new, "
        "not yet connected instance: an effect of swapping the fixture, not of the pooled filesystem"
    ),
}
"""(route, test id) -> why that route may fail a test that plain s3fs passes; an id without ``[...]`` covers
every parameter of that test."""


def expected_reason(route: str, test_id: str) -> str | None:
    """Why ``route`` may fail ``test_id`` (see :data:`EXPECTED_DIFFERENCES`), or None."""
    return EXPECTED_DIFFERENCES.get((route, test_id)) or EXPECTED_DIFFERENCES.get((route, test_id.split("[")[0]))


def fetch_suite(into: Path, sdist: Path | None) -> Path:
    """The folder of the extracted sdist of the installed s3fs release (downloaded unless ``sdist`` is given)."""
    release = version("s3fs")
    if sdist is None:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        command += [f"s3fs=={release}", "--dest", str(into)]
        subprocess.run(command, check=True)
        found = sorted(into.glob(f"s3fs-{release}.tar.gz"))
        if not found:
            raise RuntimeError(f"pip download left no s3fs-{release}.tar.gz in {into}")
        sdist = found[0]
    with tarfile.open(sdist) as archive:
        archive.extractall(into, filter="data")
    root = into / f"s3fs-{release}"
    missing = [name for name in TEST_FILES if not (root / name).is_file()]
    if missing:
        raise RuntimeError(f"the s3fs {release} sdist has no {', '.join(missing)}")
    return root


def route_command(
    root: Path, route: str, report: Path, expression: str | None, tests: Sequence[str] = TEST_FILES
) -> tuple[list[str], dict[str, str]]:
    """The pytest command and environment that run ``tests`` (default: the suite) through ``route``, writing
    ``report``."""
    env = dict(os.environ, S3FS_SUITE_ROUTE=route)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "pytest", *tests, "-p", "s3fs_routes", "-q", "-p", "no:cacheprovider"]
    command += ["--junitxml", str(report), "-o", "junit_family=xunit1", "--rootdir", str(root)]
    command += ["-o", "timeout=300", "-W", "ignore::DeprecationWarning"]
    if expression:
        command += ["-k", expression]
    return command, env


def finish_route(route: str, report: Path, output: str, returncode: int) -> dict[str, str]:
    """Print the run's last line; the outcomes from its report (RuntimeError if it wrote none)."""
    tail = output.strip().splitlines()[-1:] or ["(no output)"]
    print(f"   {route}: {tail[0]}", flush=True)
    if not report.exists():
        print(output[-5000:])
        raise RuntimeError(f"the {route} run wrote no report (pytest exit {returncode})")
    return outcomes(report)


def run_route(
    root: Path, route: str, report: Path, expression: str | None, tests: Sequence[str] = TEST_FILES
) -> dict[str, str]:
    """Run ``tests`` (default: the suite) through ``route``; test id -> outcome (passed, failed, error, skipped,
    xfailed, xpassed)."""
    command, env = route_command(root, route, report, expression, tests)
    print(f"== {route}: {' '.join(command[1:])}", flush=True)
    completed = subprocess.run(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return finish_route(route, report, completed.stdout, completed.returncode)


def differences(results: dict[str, dict[str, str]], route: str) -> list[str]:
    """The tests plain s3fs passes and ``route`` does not (expected differences included)."""
    plain, found = results["plain"], results[route]
    return [test_id for test_id in sorted(plain) if plain[test_id] == "passed" and found.get(test_id) not in PASSING]


def run_again(root: Path, results: dict[str, dict[str, str]], work: Path) -> dict[str, list[str]]:
    """Run each unexpected difference once more alone, through its route (one after the other, so no port
    collides); route -> the tests that passed then (flakes). ``results`` is updated with the new outcomes."""
    flakes: dict[str, list[str]] = {}
    for route in results:
        if route == "plain":
            continue
        again = [test_id for test_id in differences(results, route) if expected_reason(route, test_id) is None]
        if not again:
            continue
        found = run_route(root, route, work / f"{route}-again.xml", None, again)
        flakes[route] = [test_id for test_id in again if found.get(test_id) in PASSING]
        results[route].update({test_id: found[test_id] for test_id in flakes[route]})
    return flakes


def run_routes_in_parallel(
    root: Path, routes: list[str], work: Path, expression: str | None
) -> dict[str, dict[str, str]]:
    """Run every route at once, each in a network namespace of its own (the suite's moto ports are fixed)."""
    with ExitStack() as stack:
        running = []
        for route in routes:
            report = work / f"{route}.xml"
            command, env = route_command(root, route, report, expression)
            prefix = stack.enter_context(isolated_network.namespace(f"s3fs-suite-{os.getpid()}-{route}"))
            log = stack.enter_context((work / f"{route}.log").open("w+"))
            print(f"== {route} (own network namespace): {' '.join(command[1:])}", flush=True)
            process = subprocess.Popen([*prefix, *command], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((route, report, log, process))
        results = {}
        for route, report, log, process in running:
            returncode = process.wait()
            log.seek(0)
            results[route] = finish_route(route, report, log.read(), returncode)
        return results


def outcomes(report: Path) -> dict[str, str]:
    """Test id (``file::Class::test[param]``) -> outcome, from a JUnit XML report."""
    results: dict[str, str] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        file = case.get("file") or ""
        classname = case.get("classname") or ""
        module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
        inner = classname[len(module) + 1 :] if module and classname.startswith(module + ".") else ""
        test_id = "::".join(filter(None, [file, inner, case.get("name") or ""]))
        results[test_id] = _outcome(case)
    return results


def _outcome(case: ElementTree.Element) -> str:
    tags = {child.tag: child for child in case}
    if "failure" in tags:
        return "xpassed" if "[XPASS(strict)]" in (tags["failure"].get("message") or "") else "failed"
    if "error" in tags:
        return "error"
    if "skipped" in tags:
        return "xfailed" if tags["skipped"].get("type") == "pytest.xfail" else "skipped"
    return "passed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", default=",".join(ROUTES), help="comma-separated routes (default: %(default)s)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="with --keep: take a route's report left there")
    parser.add_argument("--sdist", type=Path, help="an s3fs sdist already downloaded (default: from the index)")
    parser.add_argument("-k", dest="expression", help="pytest -k expression: run a subset")
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the routes at once, each in a network namespace of its own (needs root and iproute2; "
        "one after the other otherwise)",
    )
    args = parser.parse_args(argv)
    routes = [route.strip() for route in args.routes.split(",") if route.strip()]
    bad = [route for route in routes if route not in ROUTES]
    if bad or "plain" not in routes:
        parser.error(f"--routes: expected a comma-separated list of {', '.join(ROUTES)} that includes plain")
    with tempfile.TemporaryDirectory(prefix="s3fs-suite-") as temporary:
        work = args.keep or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        try:
            root = fetch_suite(work, args.sdist)
            results = {}
            for route in routes:
                report = work / f"{route}.xml"
                if args.reuse and args.keep is not None and report.exists():
                    results[route] = outcomes(report)
            left = [route for route in routes if route not in results]
            why_not = isolated_network.available() if args.parallel and len(left) > 1 else "not asked for"
            if why_not is None:
                results.update(run_routes_in_parallel(root, left, work, args.expression))
            else:
                if args.parallel:
                    print(f"run_s3fs_suite: running the routes one after the other: {why_not}", flush=True)
                for route in left:
                    results[route] = run_route(root, route, work / f"{route}.xml", args.expression)
            results = {route: results[route] for route in routes}
            flakes = run_again(root, results, work)
        except (subprocess.CalledProcessError, RuntimeError, OSError, tarfile.TarError) as error:
            print(f"run_s3fs_suite: {error}", file=sys.stderr)
            return 2
    return compare(results, flakes)


def compare(results: dict[str, dict[str, str]], flakes: dict[str, list[str]] | None = None) -> int:
    """Print counts and differences from the plain run; 1 if a route fails a test plain passes, unexpectedly.

    ``flakes``: route -> tests that failed in the route's run and passed when run again alone (listed).
    """
    plain = results["plain"]
    unexpected = 0
    print(f"\ns3fs {version('s3fs')} suite ({', '.join(TEST_FILES)})")
    for route, found in results.items():
        counts = Counter(found.values())
        print(f"{route:>8}: " + ", ".join(f"{counts[kind]} {kind}" for kind in sorted(counts)))
    failed_plain = [test_id for test_id in sorted(plain) if plain[test_id] in ("failed", "error")]
    for test_id in failed_plain:
        print(f"  plain: {test_id} {plain[test_id]} (plain s3fs itself; not compared)")
    for route, tests in (flakes or {}).items():
        for test_id in tests:
            print(f"  {route}: {test_id} failed, then passed when run again alone (a flake, not a difference)")
    for route, found in results.items():
        if route == "plain":
            continue
        for test_id in differences(results, route):
            reason = expected_reason(route, test_id)
            mark = "expected" if reason else "UNEXPECTED"
            unexpected += reason is None
            print(f"  {route}: {test_id} {found.get(test_id, 'not run')} ({mark}{': ' + reason if reason else ''})")
        extra = sorted(set(found) - set(plain))
        for test_id in extra:
            print(f"  {route}: {test_id} ran only in this route ({found[test_id]})")
    if unexpected:
        print(f"{unexpected} unexpected difference(s) from plain s3fs")
        return 1
    print("every route passes what plain s3fs passes, apart from the expected differences listed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
