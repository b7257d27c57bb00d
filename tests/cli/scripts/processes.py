"""A boto3 program whose work is split over two processes (multiprocessing), for `s3pool run`.

Usage: python processes.py BUCKET START_METHOD [--parent-first]
The child uploads 7 objects, the parent 5 (after the child ended; with
--parent-first, 2 of them before the child starts, so the pool exists when
the process forks).
"""

import multiprocessing
import sys

import boto3


def upload(bucket: str, prefix: str, count: int) -> None:
    s3 = boto3.client("s3")
    for i in range(count):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{i}", Body=b"x")


if __name__ == "__main__":
    bucket, method = sys.argv[1], sys.argv[2]
    first = 2 if "--parent-first" in sys.argv else 0
    upload(bucket, "early", first)
    child = multiprocessing.get_context(method).Process(target=upload, args=(bucket, "child", 7))
    child.start()
    child.join()
    assert child.exitcode == 0, child.exitcode
    upload(bucket, "parent", 5 - first)
