"""The local S3 (moto) and the fault-injecting proxy of s3pool's testing kit."""

pytest_plugins = ["s3pool_plugins.testing.pytest_plugin"]
