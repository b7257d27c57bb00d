"""Helpers for the botocore adapter tests: sessions and clients aimed at LocalS3 or a ChaosProxy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config

from s3pool_plugins.testing import LocalS3


@pytest.fixture
def boto3_session(local_s3: LocalS3) -> boto3.session.Session:
    """A boto3 session with LocalS3's credentials (no profile, no real AWS)."""
    return boto3.session.Session(
        aws_access_key_id=local_s3.access_key,
        aws_secret_access_key=local_s3.secret_key,
        region_name=local_s3.region,
    )


@pytest.fixture
def s3_client_for(local_s3: LocalS3) -> Callable[..., Any]:
    """``s3_client_for(session, endpoint_url, **config)``: an S3 client of ``session`` aimed at ``endpoint_url``."""

    def make(session: Any, endpoint_url: str, **config: Any) -> Any:
        config.setdefault("s3", {"addressing_style": "path"})
        return session.client("s3", endpoint_url=endpoint_url, config=Config(**config))

    return make
