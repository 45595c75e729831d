"""The artifact bucket, seen from inside a stack: run there (``python -c <this file> MODE``), never on the host.

The kit's S3 is not published for the proxied topologies and its keys stay in the stack, so backup and restore
move objects through a one-shot container of the stack that holds them (``create-bucket``): its environment gives
``MLFLOW_S3_ENDPOINT_URL``, ``S3_BUCKET`` and the AWS keys. Standard library and boto3 only.

Modes:
  export     every object as a tar stream on stdout (member name = object key)
  import     objects from a tar stream on stdin (overwrites keys that exist); prints how many
  checksums  {key: sha256} of every object, as JSON on stdout

The kit hands this file over in the environment (``mlflowkit.backup.script_command``; command lines stay short
and readable in errors): ``python -c 'import os; exec(os.environ["MLFLOWKIT_SCRIPT"])' MODE``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile

import boto3


def main(mode: str) -> None:
    s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
    bucket = os.environ["S3_BUCKET"]

    def objects():
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):  # directory markers carry no data
                    yield item["Key"], item["Size"]

    if mode == "export":
        with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for key, size in objects():
                info = tarfile.TarInfo(key)
                info.size = size
                tar.addfile(info, s3.get_object(Bucket=bucket, Key=key)["Body"])
    elif mode == "import":
        count = 0
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
            for member in tar:
                if member.isfile():
                    s3.upload_fileobj(_Forward(tar.extractfile(member)), bucket, member.name)
                    count += 1
        print(count)
    elif mode == "checksums":
        sums = {}
        for key, _ in objects():
            digest, body = hashlib.sha256(), s3.get_object(Bucket=bucket, Key=key)["Body"]
            chunk = body.read(1 << 20)
            while chunk:
                digest.update(chunk)
                chunk = body.read(1 << 20)
            sums[key] = digest.hexdigest()
        json.dump(sums, sys.stdout)
    else:
        sys.exit(f"unknown mode {mode!r}: export, import or checksums")


class _Forward:
    """A tar member read front to back: boto3 asks a file object whether it can seek; this one says no."""

    def __init__(self, source):
        self.read = source.read

    def seekable(self) -> bool:
        return False


if __name__ == "__main__":
    main(sys.argv[1])
