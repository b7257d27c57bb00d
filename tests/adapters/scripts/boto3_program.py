"""An ordinary boto3 program that knows nothing about s3pool (run as a subprocess by the tests).

Usage: python boto3_program.py BUCKET
"""

import sys
from concurrent.futures import ThreadPoolExecutor

import boto3

bucket = sys.argv[1]
s3 = boto3.client("s3")
s3.put_object(Bucket=bucket, Key="first", Body=b"first")


def roundtrip(i: int) -> bool:
    body = f"object {i}".encode()
    s3.put_object(Bucket=bucket, Key=f"many/{i}", Body=body)
    return s3.get_object(Bucket=bucket, Key=f"many/{i}")["Body"].read() == body


with ThreadPoolExecutor(8) as executor:
    assert all(executor.map(roundtrip, range(24)))
print("boto3 program done")
