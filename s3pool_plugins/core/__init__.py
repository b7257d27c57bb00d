"""The core layer: pool, queue, scheduler, retry policy, config. No S3 library imports."""
