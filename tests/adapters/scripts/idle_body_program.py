"""A boto3 program that leaves a streamed body unread (run as a subprocess by the tests).

It asks the process-wide pool (the one the plugin installed) how long the
body kept its slot: it prints ``reclaimed`` once the pool took the slot back
because the body sat idle, or ``held`` if it still held it after the wait.

Usage: python idle_body_program.py BUCKET WAIT_SECONDS
"""

import sys
import time

import boto3

from s3pool_plugins import default_pool

bucket, wait = sys.argv[1], float(sys.argv[2])
s3 = boto3.client("s3")
s3.put_object(Bucket=bucket, Key="idle", Body=b"x" * 10_000)
body = s3.get_object(Bucket=bucket, Key="idle")["Body"]
body.read(10)  # started, then left alone
pool = default_pool()
deadline = time.monotonic() + wait
while pool.stats().leases_reclaimed == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
print("reclaimed" if pool.stats().leases_reclaimed == 1 else "held")
assert body.read() == b"x" * 9_990  # the body stays readable
