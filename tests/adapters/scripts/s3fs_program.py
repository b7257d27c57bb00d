"""An ordinary s3fs program that knows nothing about s3pool (run as a subprocess by the tests).

Usage: python s3fs_program.py BUCKET
"""

import sys

import s3fs

bucket = sys.argv[1]
fs = s3fs.S3FileSystem()
fs.pipe_file(f"{bucket}/first", b"first")
paths = {f"{bucket}/fs/{i}": f"file {i}".encode() for i in range(24)}
fs.pipe(paths)
assert fs.cat(list(paths)) == paths
print("s3fs program done")
