"""A Redis fleet backend for s3pool-plugins: pools in many processes and hosts share one S3 budget."""

from __future__ import annotations
