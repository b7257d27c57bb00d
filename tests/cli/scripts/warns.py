"""A boto3 program that logs a warning of the pool's limit logger while it uploads (run under `s3pool run`).

Usage: python warns.py BUCKET [--configure-logging]

It uploads for a second and a half, logs on ``s3pool_plugins.limits`` a
warning of the form the adaptive limit uses when it cuts throughput by more
than half, and uploads for another second and a half. With
``--configure-logging`` it calls ``logging.basicConfig`` first, as a program
that configures logging does.
"""

import logging
import sys
import time

import boto3

bucket = sys.argv[1]
if "--configure-logging" in sys.argv[2:]:
    logging.basicConfig(format="configured: %(message)s")
s3 = boto3.client("s3")


def upload_for(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        s3.put_object(Bucket=bucket, Key=f"warns/{n % 4}", Body=b"x")
        n += 1


upload_for(1.5)
logging.getLogger("s3pool_plugins.limits").warning("s3pool: pool 'test': limit 10 -> 4, pace 20/s -> 8/s (throttling)")
upload_for(1.5)
print("uploads done")
