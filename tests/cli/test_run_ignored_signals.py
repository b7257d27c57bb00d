"""s3pool run must leave signals that were ignored when it started ignored in the program (nohup, `cmd &`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.parametrize("name", ["SIGHUP", "SIGINT"])
def test_a_signal_ignored_by_s3pools_caller_stays_ignored_in_the_program(name) -> None:
    # nohup sets SIGHUP to SIG_IGN; a non-interactive shell's `cmd &` sets SIGINT to SIG_IGN.
    # exec keeps SIG_IGN but resets a handled signal to SIG_DFL: handlers installed before Popen
    # turned the inherited "ignore" into "die" in the program.
    driver = textwrap.dedent(
        f"""
        import os, signal, sys
        signal.signal(signal.{name}, signal.SIG_IGN)
        from s3pool_plugins.cli.run import run_program
        child = "import signal, sys; sys.exit(0 if signal.getsignal(signal.{name}) is signal.SIG_IGN else 3)"
        sys.exit(run_program([sys.executable, "-c", child], os.environ))
        """
    )
    done = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
