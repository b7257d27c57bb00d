"""A pooled S3 call that must wait for a slot, with the longest queue timeout the configuration accepts."""

from __future__ import annotations

import threading
import time

from s3pool_plugins import install
from s3pool_plugins.core.validation import MAX_SECONDS


def test_a_pooled_put_object_waits_for_its_slot_with_a_huge_queue_timeout(
    make_pool, boto3_session, s3_client_for, local_s3, s3_bucket
) -> None:
    pool = make_pool(concurrency=1, queue_timeout=MAX_SECONDS)  # the longest the configuration accepts
    client = s3_client_for(boto3_session, local_s3.endpoint_url)
    install(client, pool)
    holder = pool.acquire()  # the only slot: the call must queue
    outcome: list[object] = []

    def put() -> None:
        try:
            response = client.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
            outcome.append(response["ResponseMetadata"]["HTTPStatusCode"])
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=put)
    thread.start()
    deadline = time.monotonic() + 10
    while pool.stats().queued != 1 and not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    holder.release()
    thread.join(10)
    assert outcome == [200]  # [OverflowError(...)] on the previous code: the wait for a slot overflowed
