"""Objects into the artifact bucket from a tar stream on stdin, run inside a stack's S3 one-shot (``python -c <this
file>``); prints how many. Like ``s3_objects.py import``, but each member is spooled first: boto3's
``upload_fileobj`` asks a tar member read from a stream whether it is seekable, which a streamed tar cannot answer.
Standard library and boto3 only.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile

import boto3


def main() -> None:
    s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
    bucket, count = os.environ["S3_BUCKET"], 0
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
        for member in tar:
            data = tar.extractfile(member) if member.isfile() else None
            if data is None:
                continue
            with tempfile.SpooledTemporaryFile(max_size=64 * 2**20) as spooled:
                shutil.copyfileobj(data, spooled)
                spooled.seek(0)
                s3.upload_fileobj(spooled, bucket, member.name)
            count += 1
    print(count)


if __name__ == "__main__":
    main()
