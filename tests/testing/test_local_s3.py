"""LocalS3: a real S3 endpoint over HTTP on loopback, reached by boto3, s3fs and subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from s3pool_plugins.testing import DEFAULT_ACCESS_KEY, LocalS3


def test_fixture_serves_on_loopback(local_s3: LocalS3) -> None:
    assert local_s3.running
    parts = urlsplit(local_s3.endpoint_url)
    assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", local_s3.port)


def test_object_round_trip(local_s3: LocalS3, s3_bucket: str) -> None:
    client = local_s3.client()
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0
    client.put_object(Bucket=s3_bucket, Key="dir/a.txt", Body=b"alpha")
    client.copy_object(Bucket=s3_bucket, Key="dir/b.txt", CopySource={"Bucket": s3_bucket, "Key": "dir/a.txt"})
    assert client.get_object(Bucket=s3_bucket, Key="dir/b.txt")["Body"].read() == b"alpha"
    assert client.head_object(Bucket=s3_bucket, Key="dir/a.txt")["ContentLength"] == 5
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="dir/")
    assert [item["Key"] for item in listed["Contents"]] == ["dir/a.txt", "dir/b.txt"]
    client.delete_object(Bucket=s3_bucket, Key="dir/a.txt")
    with pytest.raises(ClientError) as caught:
        client.head_object(Bucket=s3_bucket, Key="dir/a.txt")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_each_test_gets_a_fresh_bucket(local_s3: LocalS3, s3_bucket: str) -> None:
    other = local_s3.create_bucket()
    assert other != s3_bucket
    assert local_s3.create_bucket("s3pool-named-bucket") == "s3pool-named-bucket"
    client = local_s3.client()
    client.put_object(Bucket=other, Key="x", Body=b"1")
    client.create_multipart_upload(Bucket=other, Key="pending")
    for name in (other, "s3pool-named-bucket"):
        local_s3.delete_bucket(name)
    names = {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
    assert s3_bucket in names and other not in names and "s3pool-named-bucket" not in names


def test_env_points_everything_at_the_server(local_s3: LocalS3) -> None:
    env = local_s3.env()
    assert env["AWS_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL_S3"] == local_s3.endpoint_url
    assert env["AWS_ACCESS_KEY_ID"] == DEFAULT_ACCESS_KEY
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert local_s3.env(endpoint_url="http://127.0.0.1:1")["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:1"

    base = {"PATH": "/bin", "AWS_PROFILE": "production", "AWS_SESSION_TOKEN": "real", "aws_endpoint_url": "x"}
    merged = local_s3.subprocess_env(base)
    assert merged["PATH"] == "/bin"
    assert "AWS_PROFILE" not in merged and "AWS_SESSION_TOKEN" not in merged and "aws_endpoint_url" not in merged
    assert merged["AWS_ENDPOINT_URL_S3"] == local_s3.endpoint_url


def test_unmodified_boto3_and_s3fs_programs_reach_it(local_s3: LocalS3, s3_bucket: str) -> None:
    local_s3.client().put_object(Bucket=s3_bucket, Key="in.txt", Body=b"from the test")
    script = textwrap.dedent(
        f"""
        import boto3, s3fs
        s3 = boto3.client("s3")
        assert s3.get_object(Bucket="{s3_bucket}", Key="in.txt")["Body"].read() == b"from the test"
        s3.put_object(Bucket="{s3_bucket}", Key="out.txt", Body=b"from boto3")
        fs = s3fs.S3FileSystem()
        print(sorted(fs.ls("{s3_bucket}")))
        with fs.open("{s3_bucket}/fs.txt", "wb") as f:
            f.write(b"from s3fs")
        """
    )
    # A developer's real settings must not leak in: subprocess_env drops them.
    poisoned = {**os.environ, "AWS_PROFILE": "no-such-profile", "AWS_ENDPOINT_URL": "http://192.0.2.1:9"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=local_s3.subprocess_env(poisoned),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr([f"{s3_bucket}/in.txt", f"{s3_bucket}/out.txt"])
    assert local_s3.client().get_object(Bucket=s3_bucket, Key="fs.txt")["Body"].read() == b"from s3fs"


def test_storage_options_work_with_s3fs(local_s3: LocalS3, s3_bucket: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **local_s3.storage_options())
    fs.pipe(f"{s3_bucket}/data.bin", b"\x00\x01\x02")
    assert fs.cat(f"{s3_bucket}/data.bin") == b"\x00\x01\x02"
    assert local_s3.client().head_object(Bucket=s3_bucket, Key="data.bin")["ContentLength"] == 3


def test_credentials_can_be_overridden_and_servers_share_moto_state(local_s3: LocalS3, s3_bucket: str) -> None:
    with LocalS3(access_key="LEAKCHECK-ACCESS", secret_key="LEAKCHECK-SECRET") as other:
        assert other.port != local_s3.port
        assert other.env()["AWS_ACCESS_KEY_ID"] == "LEAKCHECK-ACCESS"
        assert other.client_kwargs()["aws_secret_access_key"] == "LEAKCHECK-SECRET"
        client = other.client()
        sent: list[str] = []
        client.meta.events.register(
            "before-send.s3", lambda request, **_: sent.append(request.headers["Authorization"])
        )
        # moto keeps one store per process: the session server's bucket is visible here.
        assert s3_bucket in {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
        assert "Credential=LEAKCHECK-ACCESS/" in sent[0].decode()
    assert not other.running
    with pytest.raises(RuntimeError):
        other.endpoint_url  # noqa: B018


def test_reset_empties_the_store() -> None:
    with LocalS3() as server:
        bucket = server.create_bucket()
        client = server.client()
        client.put_object(Bucket=bucket, Key="k", Body=b"v")
        server.reset()
        assert bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}


def test_delete_bucket_empties_more_than_a_thousand_objects(local_s3) -> None:
    bucket = local_s3.create_bucket()
    client = local_s3.client()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as executor:
        list(executor.map(lambda i: client.put_object(Bucket=bucket, Key=f"k{i:04d}", Body=b""), range(1100)))
    local_s3.delete_bucket(bucket)
    assert bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]
