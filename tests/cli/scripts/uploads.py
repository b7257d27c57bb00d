"""An ordinary boto3 program that knows nothing about s3pool (run under `s3pool run` by the tests).

Usage: python uploads.py BUCKET COUNT
"""

import sys
from concurrent.futures import ThreadPoolExecutor

import boto3

bucket, count = sys.argv[1], int(sys.argv[2])
s3 = boto3.client("s3")


def upload(i: int) -> None:
    s3.put_object(Bucket=bucket, Key=f"uploads/{i}", Body=f"object {i}".encode())


with ThreadPoolExecutor(8) as executor:  # every upload runs, also after one failed (map would cancel the rest)
    futures = [executor.submit(upload, i) for i in range(count)]
for future in futures:
    future.result()
assert s3.head_object(Bucket=bucket, Key="uploads/0")["ContentLength"] == len("object 0")
print("uploads done")
