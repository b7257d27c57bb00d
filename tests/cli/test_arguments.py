"""Bad arguments: a usage message that names the problem, exit status 2, and nothing started."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

import pytest

from s3pool_plugins.cli import main
from s3pool_plugins.cli.run import PLUGIN_MODULE, POOL_OPTIONS, child_environment, plugins_value, pool_variables


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: s3pool"), error
    return error


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--concurrency", "0", "integer >= 1"),
        ("--concurrency", "lots", "'lots'"),
        ("--concurrency", "automatic", "integer >= 1 or 'auto'"),
        ("--min-concurrency", "0", "integer >= 1"),
        ("--max-concurrency", "many", "integer >= 1"),
        ("--target-latency", "-1", "number of seconds > 0"),
        ("--target-memory-percent", "75", "fraction > 0 and <= 1"),
        ("--adjustment-interval", "0", "number of seconds > 0"),
        ("--auto-scope", "key", "invalid choice"),
        ("--retries", "-1", "integer >= 0"),
        ("--retry-delay", "soon", "number of seconds > 0"),
        ("--retry-delay", "0", "number of seconds > 0"),
        ("--max-retry-delay", "inf", "number of seconds > 0"),
        ("--queue-timeout", "-3", "or 'none'"),
        ("--priority", "high", "a number"),
        ("--monitoring", "loud", "invalid choice"),
        ("--body-idle-timeout", "0", "number of seconds > 0"),
        ("--body-idle-timeout", "soon", "number of seconds > 0"),
        (
            "--body-idle-timeout",
            "1e6",
            "'1000000' is not accepted: expected a number of seconds > 0 and <= 604800 (7 days)",
        ),
    ],
)
def test_each_bad_run_option_names_itself(capsys, tmp_path, option, value, expected) -> None:
    marker = tmp_path / "ran"
    error = _usage_error(
        capsys, "run", option, value, "--", sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"
    )
    assert f"argument {option}: " in error and expected in error
    assert not marker.exists()  # nothing half-ran


def test_auto_tuning_options_need_auto_concurrency(capsys, monkeypatch, tmp_path) -> None:
    marker = tmp_path / "ran"
    program = ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    error = _usage_error(capsys, "run", "--max-concurrency", "8", *program)
    assert "argument --max-concurrency: only together with --concurrency auto" in error
    assert "S3POOL_" not in error.splitlines()[-1]  # the user typed flags: the message speaks of flags
    monkeypatch.setenv("S3POOL_CONCURRENCY", "8")
    error = _usage_error(capsys, "run", "--min-concurrency", "2", *program)
    assert "argument --min-concurrency: only together with --concurrency auto" in error
    assert "S3POOL_CONCURRENCY is '8' in the environment" in error  # where the fixed limit came from
    assert not marker.exists()


def test_the_bounds_of_the_adaptive_limit_are_named_by_their_flags(capsys, monkeypatch, tmp_path) -> None:
    marker = tmp_path / "ran"
    program = ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    error = _usage_error(
        capsys, "run", "--concurrency", "auto", "--min-concurrency", "50", "--max-concurrency", "4", *program
    )
    last = error.splitlines()[-1]
    assert "argument --max-concurrency: expected an integer >= the minimum (--min-concurrency 50), got 4" in last
    assert "min_concurrency" not in last and "an int " not in last
    last = _usage_error(capsys, "run", "--concurrency", "auto", "--min-concurrency", "100", *program).splitlines()[-1]
    assert "argument --min-concurrency: expected an integer <= the maximum (default 64" in last
    assert "--max-concurrency" in last and "max_concurrency" not in last
    monkeypatch.setenv("S3POOL_AUTO_MAX_CONCURRENCY", "6")
    last = _usage_error(capsys, "run", "--concurrency", "auto", "--min-concurrency", "7", *program).splitlines()[-1]
    assert "argument --min-concurrency:" in last and "(S3POOL_AUTO_MAX_CONCURRENCY 6;" in last
    assert not marker.exists()


def test_auto_concurrency_and_its_options_become_variables() -> None:
    args = argparse.Namespace(
        **_defaults(concurrency="auto", auto_max_concurrency=48, auto_target_latency=0.5, auto_scope="prefix")
    )
    variables = pool_variables(args)
    assert variables == {
        "S3POOL_CONCURRENCY": "auto",
        "S3POOL_AUTO_MAX_CONCURRENCY": "48",
        "S3POOL_AUTO_TARGET_LATENCY": "0.5",
        "S3POOL_AUTO_SCOPE": "prefix",
    }
    environment = child_environment(args, {})
    assert environment["S3POOL_AUTO_SCOPE"] == "prefix"


def test_the_program_is_required_and_must_exist(capsys, tmp_path) -> None:
    assert "the program to run is missing" in _usage_error(capsys, "run", "--concurrency", "4")
    assert "the program to run is missing" in _usage_error(capsys, "run", "--")
    error = _usage_error(capsys, "run", "--", "s3pool-no-such-program-here", "x")
    assert "argument PROGRAM: 's3pool-no-such-program-here' was not found" in error
    not_executable = tmp_path / "data.txt"
    not_executable.write_text("")
    assert "was not found" in _usage_error(capsys, "run", "--", str(not_executable))


def test_otel_switches_exclude_each_other(capsys) -> None:
    error = _usage_error(capsys, "run", "--otel", "--no-otel", "--", sys.executable, "-c", "pass")
    assert "--no-otel" in error and "not allowed with argument --otel" in error


def test_report_needs_an_existing_folder(capsys, tmp_path) -> None:
    error = _usage_error(capsys, "run", "--report", str(tmp_path / "missing" / "r.json"), "--", sys.executable)
    assert "argument --report: the folder" in error
    error = _usage_error(capsys, "run", "--report", str(tmp_path), "--", sys.executable)
    assert "argument --report:" in error and "is a folder" in error


def test_a_bad_inherited_variable_is_named(capsys, monkeypatch, tmp_path) -> None:
    marker = tmp_path / "ran"
    monkeypatch.setenv("S3POOL_CONCURENCY", "4")  # a typo in the user's environment
    error = _usage_error(capsys, "run", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w').close()")
    assert "environment variable S3POOL_CONCURENCY is not one s3pool knows; did you mean S3POOL_CONCURRENCY?" in error
    monkeypatch.delenv("S3POOL_CONCURENCY")
    monkeypatch.setenv("S3POOL_RETRIES", "-2")
    assert "environment variable S3POOL_RETRIES" in _usage_error(capsys, "run", "--", sys.executable)
    monkeypatch.delenv("S3POOL_RETRIES")
    monkeypatch.setenv("S3POOL_BODY_IDLE_TIMEOUT", "soon")
    error = _usage_error(capsys, "run", "--", sys.executable)
    assert (
        "environment variable S3POOL_BODY_IDLE_TIMEOUT: 'soon' is not accepted: expected a number of seconds" in error
    )
    monkeypatch.delenv("S3POOL_BODY_IDLE_TIMEOUT")
    monkeypatch.setenv("BOTOCORE_EXPERIMENTAL__PLUGINS", "DISABLED")
    assert "DISABLED turns botocore's plugins off" in _usage_error(capsys, "run", "--", sys.executable)
    assert not marker.exists()


def test_an_option_overrides_an_inherited_variable(monkeypatch) -> None:
    monkeypatch.setenv("S3POOL_RETRIES", "-2")
    args = argparse.Namespace(**_defaults(retries=4))
    assert child_environment(args, {"S3POOL_RETRIES": "-2"})["S3POOL_RETRIES"] == "4"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--objects", "0"], "argument --objects: expected an integer >= 1"),
        (["--threads", "x"], "argument --threads:"),
        (["--concurrency", "0"], "argument --concurrency: expected an integer >= 1 or 'auto'"),
        (["--rate", "0"], "argument --rate: expected a number per second > 0"),
        (["--chart", "x.html", "--no-chart"], "argument --no-chart: not allowed with argument --chart"),
    ],
)
def test_each_bad_demo_option_names_itself(capsys, argv, expected) -> None:
    assert expected in _usage_error(capsys, "demo", *argv)


def test_demo_chart_needs_an_existing_folder(capsys, tmp_path) -> None:
    error = _usage_error(capsys, "demo", "--chart", str(tmp_path / "missing" / "chart.html"))
    assert "argument --chart: the folder" in error


def test_no_command_or_an_unknown_one(capsys) -> None:
    assert "required: COMMAND" in _usage_error(capsys)
    assert "invalid choice: 'benchmark'" in _usage_error(capsys, "benchmark")


def _defaults(**given: object) -> dict[str, object]:
    values: dict[str, object] = dict.fromkeys(POOL_OPTIONS)
    values["otel"] = None
    values.update(given)
    return values


def test_options_become_variables() -> None:
    args = argparse.Namespace(
        **_defaults(
            concurrency=32,
            retry_delay=0.25,
            queue_timeout="none",
            priority=5.0,
            monitoring="off",
            body_idle_timeout=30.0,
            otel=False,
        )
    )
    assert pool_variables(args) == {
        "S3POOL_CONCURRENCY": "32",
        "S3POOL_RETRY_DELAY": "0.25",
        "S3POOL_QUEUE_TIMEOUT": "none",
        "S3POOL_PRIORITY": "5",
        "S3POOL_MONITORING": "off",
        "S3POOL_BODY_IDLE_TIMEOUT": "30",
        "S3POOL_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    environment = child_environment(argparse.Namespace(**_defaults(otel=True)), {"S3POOL_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "S3POOL_DISABLE_PLUGIN_AUTOLOAD" not in environment  # --otel turns autoloading back on
    assert environment["BOTOCORE_EXPERIMENTAL__PLUGINS"] == f"s3pool={PLUGIN_MODULE}"


def test_the_plugin_variable_is_appended_to() -> None:
    assert plugins_value(None) == f"s3pool={PLUGIN_MODULE}"
    assert plugins_value("other=their.module") == f"other=their.module,s3pool={PLUGIN_MODULE}"
    assert plugins_value("s3pool=old.module, other=m") == f"other=m,s3pool={PLUGIN_MODULE}"
    with pytest.raises(ValueError, match="DISABLED"):
        plugins_value("DISABLED")


def test_python_dash_m_and_the_console_script_are_the_same_command() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "s3pool_plugins", "run", "--retries", "x"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "argument --retries: expected an integer >= 0, got 'x'" in done.stderr
    (script,) = entry_points(group="console_scripts", name="s3pool")
    assert script.value == "s3pool_plugins.cli:main"


def test_the_pools_messages_are_put_in_the_users_words() -> None:
    from s3pool_plugins.cli.run import _in_users_words

    typed = {"S3POOL_AUTO_MIN_CONCURRENCY": "50", "S3POOL_CONCURRENCY": "auto"}
    assert _in_users_words("an int >= min_concurrency (50)", typed) == "an integer >= --min-concurrency (50)"
    assert _in_users_words("an int >= auto_tuning.min_concurrency (50)", typed) == (
        "an integer >= --min-concurrency (50)"
    )
    # Not typed as an option: the variable the user exported is named instead.
    assert _in_users_words("an int >= min_concurrency (50)", {}) == "an integer >= S3POOL_AUTO_MIN_CONCURRENCY (50)"
    assert _in_users_words("set only together with S3POOL_CONCURRENCY=auto", {}) == (
        "set only together with --concurrency auto"
    )
    assert _in_users_words("a number of retries", typed) == "a number of retries"  # plain words stay
