"""`s3pool local-s3`: the real command in a subprocess, used from boto3 with the environment it prints."""

from __future__ import annotations

import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})


class Served:
    """A running ``s3pool local-s3``: its process, the lines it printed and the environment it exported."""

    def __init__(self, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "s3pool_plugins", "local-s3", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.environment: dict[str, str] = {}
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: [lines.put(line) for line in iter(stdout.readline, "")], daemon=True).start()
        deadline = time.monotonic() + 60
        while "AWS_SHARED_CREDENTIALS_FILE" not in self.environment:
            assert time.monotonic() < deadline, f"no environment printed: {self.lines}"
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                assert self.process.poll() is None, self.process.communicate()
                continue
            self.lines.append(line.rstrip("\n"))
            if line.startswith("export "):
                ((name, value),) = [shlex.split(line[len("export ") :])[0].split("=", 1)]
                self.environment[name] = value

    def client(self) -> object:
        """A boto3 client configured only from the printed environment."""
        session = boto3.session.Session(
            aws_access_key_id=self.environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.environment["AWS_SECRET_ACCESS_KEY"],
            region_name=self.environment["AWS_DEFAULT_REGION"],
        )
        return session.client("s3", endpoint_url=self.environment["AWS_ENDPOINT_URL"], config=NO_RETRY)

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        """Send ``signum``; the exit status and stderr (stdout is read by the reader thread)."""
        self.process.send_signal(signum)
        assert self.process.stderr is not None
        err = self.process.stderr.read()
        return self.process.wait(timeout=60), err


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for one in started:
        if one.process.poll() is None:
            one.process.kill()
            one.process.communicate(timeout=30)


def _port_is_closed(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return False
    except OSError:
        return True


def test_local_s3_serves_boto3_from_its_printed_environment_until_ctrl_c(served) -> None:
    server = Served("--bucket", "local-bucket")
    served.append(server)
    assert server.lines[0].startswith("# s3pool local-s3: S3 (moto) at http://127.0.0.1:")
    endpoint = server.environment["AWS_ENDPOINT_URL"]
    assert server.environment["AWS_ENDPOINT_URL_S3"] == endpoint and "AWS_SECRET_ACCESS_KEY" in server.environment
    client = server.client()
    client.put_object(Bucket="local-bucket", Key="k", Body=b"through the printed environment")
    assert client.get_object(Bucket="local-bucket", Key="k")["Body"].read() == b"through the printed environment"
    # An unmodified program that knows only the environment variables reaches it too.
    script = "import boto3; print(boto3.client('s3').list_buckets()['Buckets'][0]['Name'])"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    listed = subprocess.run(
        [sys.executable, "-c", script], env={**clean, **server.environment}, capture_output=True, text=True, timeout=60
    )
    assert listed.stdout.strip() == "local-bucket", listed.stderr
    status, err = server.stop(signal.SIGINT)
    assert status == 0, err
    assert "Traceback" not in err
    assert _port_is_closed(endpoint)


def test_local_s3_with_chaos_puts_the_fault_proxy_in_front_and_stops_on_sigterm(served) -> None:
    server = Served("--bucket", "chaos-bucket", "--limit-writes", "chaos-bucket/hot/=1", "--limit-burst", "1")
    served.append(server)
    assert any(
        line.startswith("# fault proxy at ") and "chaos-bucket/hot/ limited to writes 1/s" in line
        for line in server.lines
    ), server.lines
    client = server.client()
    client.put_object(Bucket="chaos-bucket", Key="hot/a", Body=b"1")  # the one token of the bucket
    with pytest.raises(ClientError) as throttled:
        client.put_object(Bucket="chaos-bucket", Key="hot/b", Body=b"2")
    assert throttled.value.response["Error"]["Code"] == "SlowDown"
    client.put_object(Bucket="chaos-bucket", Key="cold/c", Body=b"3")  # other prefixes are not limited
    status, err = server.stop(signal.SIGTERM)
    assert status == 0, err
    assert "the proxy saw 3 requests: 1 throttled" in err
    assert _port_is_closed(server.environment["AWS_ENDPOINT_URL"])


def test_local_s3_fault_rates_reach_the_proxy(served) -> None:
    server = Served("--error-rate", "1")
    served.append(server)
    with pytest.raises(ClientError) as failed:
        server.client().list_buckets()
    assert failed.value.response["Error"]["Code"] == "InternalError"
    status, err = server.stop()
    assert status == 0 and "1 internal errors" in err
