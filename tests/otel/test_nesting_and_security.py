"""Spans nest under botocore's own instrumentation, and no secret reaches anything the pool exports."""

from __future__ import annotations

import base64
import logging

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

from s3pool_plugins import hookimpl, install
from s3pool_plugins.testing import Action, LocalS3

PATH_STYLE = Config(s3={"addressing_style": "path"})


def test_our_span_is_the_parent_of_botocore_instrumentations(make_pool, telemetry, local_s3, s3_bucket) -> None:
    instrumentor = BotocoreInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        pool = make_pool(plugins=[telemetry.plugin()])
        session = boto3.session.Session(
            aws_access_key_id=local_s3.access_key, aws_secret_access_key=local_s3.secret_key, region_name="us-east-1"
        )
        install(session, pool)
        s3 = session.client("s3", endpoint_url=local_s3.endpoint_url, config=PATH_STYLE)
        s3.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    finally:
        instrumentor.uninstrument()
    spans = telemetry.finished("S3.PutObject")
    ours = [span for span in spans if span.instrumentation_scope.name == "s3pool_plugins"]
    theirs = [span for span in spans if span.instrumentation_scope.name != "s3pool_plugins"]
    assert len(ours) == 1 and len(theirs) == 1  # one each: nested, not duplicated side by side
    assert theirs[0].parent.span_id == ours[0].context.span_id


ACCESS_KEY = "AKIAS3POOLLEAKCHECK01"
SECRET_KEY = "s3pool/leak-check/SECRET+do-not-export/0123456789"
SESSION_TOKEN = "s3pool-leak-check-SESSION-TOKEN-0123456789abcdef"
SSE_C_KEY = b"s3pool-leak-check-SSE-C-key-32b!"


class EverythingHooks:
    """Records the repr of every argument of every notification hook."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _keep(self, *values: object) -> None:
        for value in values:
            self.seen.append(repr(value))
            metadata = getattr(value, "metadata", None)
            if metadata is not None:
                self.seen.append(repr(dict(metadata)))
            response = getattr(value, "response", None)
            if response is not None:
                self.seen.append(repr(response))

    @hookimpl
    def s3pool_task_queued(self, pool, task):
        self._keep(task)

    @hookimpl
    def s3pool_task_started(self, pool, task):
        self._keep(task)

    @hookimpl
    def s3pool_task_retry(self, pool, task, error, delay, classification):
        self._keep(task, error, classification)

    @hookimpl
    def s3pool_task_completed(self, pool, task, result):
        self._keep(task, result)

    @hookimpl
    def s3pool_task_error(self, pool, task, error):
        self._keep(task, error, getattr(error, "__notes__", None))

    @hookimpl
    def s3pool_task_metrics(self, pool, task, metrics):
        self._keep(metrics)


def test_no_credential_signature_or_sse_c_key_is_exported(make_pool, telemetry, chaos_proxy, caplog) -> None:
    server = LocalS3(access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    hooks = EverythingHooks()
    caplog.set_level(logging.DEBUG, logger="s3pool_plugins")
    with server:
        bucket = server.create_bucket()
        pool = make_pool(retries=2, retry_delay=0.001, monitoring="full", plugins=[telemetry.plugin(), hooks])
        session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            aws_session_token=SESSION_TOKEN,
            region_name="us-east-1",
        )
        install(session, pool)
        proxy = type(chaos_proxy)(server.endpoint_url)
        with proxy:
            s3 = session.client("s3", endpoint_url=proxy.endpoint_url, config=PATH_STYLE)
            sse = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY}
            proxy.inject(Action.THROTTLE, 1)
            s3.put_object(Bucket=bucket, Key="secret-object", Body=b"payload", **sse)
            s3.get_object(Bucket=bucket, Key="secret-object", **sse)["Body"].read()
            url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "secret-object"})
            assert "Signature" in url and ACCESS_KEY in url  # the secrets are real here, and must not leak
            with pytest.raises(ClientError):
                s3.get_object(Bucket=bucket, Key="missing-object", **sse)  # a failure, with the key in the request
            proxy.configure(throttle_rate=1.0)
            with pytest.raises(ClientError):
                s3.head_object(Bucket=bucket, Key="secret-object", **sse)
    exported: list[str] = []
    for span in telemetry.finished():
        exported += [span.name, repr(dict(span.attributes)), repr(span.resource.attributes)]
        exported += [f"{event.name} {dict(event.attributes)}" for event in span.events]
    exported.append(repr(telemetry.reader.get_metrics_data()))
    exported += hooks.seen
    exported += [record.getMessage() + repr(record.args) for record in caplog.records]
    exported.append(repr(pool.metrics().as_dict()))
    exported += [repr(hook_metrics) for hook_metrics in hooks.seen if "task_id" in hook_metrics]
    text = "\n".join(exported)
    assert len(telemetry.finished()) >= 4 and len(hooks.seen) > 20  # the scan saw real material
    forbidden = {
        "access key": ACCESS_KEY,
        "secret key": SECRET_KEY,
        "session token": SESSION_TOKEN,
        "SSE-C key": SSE_C_KEY.decode(),
        "SSE-C key (base64)": base64.b64encode(SSE_C_KEY).decode(),
        "Authorization header": "AWS4-HMAC-SHA256 Credential",
        "signature": "Signature=",
        "presigned signature": "X-Amz-Signature",
        "presigned credential": "X-Amz-Credential",
        "security token header": "X-Amz-Security-Token",
    }
    leaked = {what: secret for what, secret in forbidden.items() if secret in text}
    assert not leaked, leaked
