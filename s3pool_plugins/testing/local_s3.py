"""A real S3 endpoint over HTTP on a free loopback port: moto's server, in a thread.

:class:`LocalS3` runs the server that ``moto.server.ThreadedMotoServer``
builds (werkzeug's threaded WSGI server around moto's
``DomainDispatcherApplication``) with per-request logging off, and hands out
everything a client needs to reach it, and only it: an endpoint URL,
fixed fake credentials, and the environment for a subprocess.

Two facts about moto to keep in mind:

- moto keeps its data in module globals, so every LocalS3 of one process
  (and any ``moto.mock_aws`` in it) shares one store; :meth:`LocalS3.reset`
  empties all of it. Tests stay apart by using fresh buckets.
- werkzeug's server closes the connection after every response (no
  keep-alive), so each request to it costs a TCP connect.
"""

from __future__ import annotations

import os
import threading
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

from .loopback import LoopbackServer

DEFAULT_ACCESS_KEY = "s3pool-local-access-key"
DEFAULT_SECRET_KEY = "s3pool-local-secret-key"
DEFAULT_REGION = "us-east-1"


class LocalS3(LoopbackServer):
    """A moto S3 server on ``host`` (default 127.0.0.1) and a free port (or ``port``).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    ``access_key``, ``secret_key`` and ``region`` are what :meth:`client`,
    :meth:`env` and friends hand out; moto accepts any signature, so pick
    recognisable values when a test looks for leaked credentials.

    Every helper sets the endpoint explicitly (an IP address, so botocore
    uses path-style addressing), so nothing here can reach the real AWS.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        region: str = DEFAULT_REGION,
    ) -> None:
        self.host = host
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self._requested_port = port
        self._port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._lock = threading.Lock()

    # -- lifecycle

    def start(self) -> LocalS3:
        """Start serving (idempotent); returns self."""
        with self._lock:
            if self._server is not None:
                return self
            from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
            from werkzeug.serving import WSGIRequestHandler, make_server

            class QuietHandler(WSGIRequestHandler):
                def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                    pass

            app = DomainDispatcherApplication(create_backend_app)
            server = make_server(self.host, self._requested_port, app, threaded=True, request_handler=QuietHandler)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="s3pool-local-s3", daemon=True
            )
            thread.start()
            self._server, self._thread, self._port = server, thread, int(server.server_address[1])
            return self

    def stop(self) -> None:
        """Stop serving and close the port (idempotent). Stored data stays in moto (see :meth:`reset`)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = self._client = None
            self._port = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)

    # -- addresses and credentials

    def env(self, endpoint_url: str | None = None) -> dict[str, str]:
        """Environment variables that point an unmodified boto3, aws-cli or s3fs program here.

        Credentials, region, ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_S3``
        (``endpoint_url``, for example a proxy's, or this server's), IMDS
        lookups disabled, and config and credential files set to
        ``os.devnull`` so a developer's ``~/.aws`` cannot redirect anything.
        Merge it into a clean environment with :meth:`subprocess_env`.
        """
        url = endpoint_url if endpoint_url is not None else self.endpoint_url
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": url,
            "AWS_ENDPOINT_URL_S3": url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def subprocess_env(
        self, base: Mapping[str, str] | None = None, *, endpoint_url: str | None = None
    ) -> dict[str, str]:
        """``base`` (default ``os.environ``) without any ``AWS_*`` variable, plus :meth:`env`.

        Dropping inherited ``AWS_*`` variables (profiles, session tokens, real
        endpoints) is what makes the subprocess safe.
        """
        source = os.environ if base is None else base
        clean = {name: value for name, value in source.items() if not name.upper().startswith("AWS_")}
        clean.update(self.env(endpoint_url))
        return clean

    def client_kwargs(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("s3", ...)`` or aiobotocore's ``create_client``."""
        return {
            "endpoint_url": endpoint_url if endpoint_url is not None else self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    def storage_options(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """``storage_options`` for s3fs, fsspec and pandas (``key``, ``secret``, ``client_kwargs``)."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {
                "endpoint_url": endpoint_url if endpoint_url is not None else self.endpoint_url,
                "region_name": self.region,
            },
        }

    # -- conveniences

    def client(self, **kwargs: Any) -> Any:
        """A new boto3 S3 client for this server (path-style), from its own boto3 session.

        ``kwargs`` go to ``Session.client`` and win over the defaults; pass
        ``endpoint_url=proxy.endpoint_url`` to go through a proxy. A
        ``config`` is merged over ``Config(s3={"addressing_style": "path"})``.
        """
        import boto3
        from botocore.config import Config

        options = self.client_kwargs()
        options.update(kwargs)
        base = Config(s3={"addressing_style": "path"})
        options["config"] = base.merge(kwargs["config"]) if kwargs.get("config") is not None else base
        session = boto3.session.Session()
        return session.client("s3", **options)

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (named ``s3pool-test-<random hex>`` if ``name`` is None); returns its name."""
        bucket = name if name is not None else f"s3pool-test-{uuid.uuid4().hex[:20]}"
        self._shared_client().create_bucket(Bucket=bucket)
        return bucket

    def delete_bucket(self, name: str) -> None:
        """Delete every object, upload and version in ``name``, then the bucket itself."""
        client = self._shared_client()
        entries = [  # listed in full first: deleting while paging would skip entries
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for page in client.get_paginator("list_object_versions").paginate(Bucket=name)
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        for start in range(0, len(entries), 1000):  # DeleteObjects takes at most 1,000 keys
            client.delete_objects(Bucket=name, Delete={"Objects": entries[start : start + 1000], "Quiet": True})
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        client.delete_bucket(Bucket=name)

    def reset(self) -> None:
        """Empty moto's whole store (``POST /moto-api/reset``): every bucket of every LocalS3 in this process."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def _shared_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self.client()
            return self._client
