"""Storage fixtures (moto S3 server, fake AWS credentials, `store` on both backends)."""

from testsupport.s3_server import (  # noqa: F401  (fixtures are found by name)
    fake_aws_credentials,
    local_store,
    moto_endpoint,
    s3_bucket,
    s3_store,
    store,
)
