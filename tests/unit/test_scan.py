"""The image secret scan on archives built here: layers plain or compressed (the containerd image store keeps them
gzip- or zstd-compressed), a key after a certificate, and an archive with no readable layer (an error, not clean)."""

from __future__ import annotations

import base64
import gzip
import io
import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zstandard

from mlflowkit import images
from mlflowkit.errors import KitError


def _pem(kind: str) -> bytes:
    body = base64.encodebytes(os.urandom(600))  # made here, never committed: shaped like a key, not one
    return f"-----BEGIN {kind}-----\n".encode() + body + f"-----END {kind}-----\n".encode()


PEM_CERTIFICATE = _pem("CERTIFICATE")
PEM_KEY = _pem("PRIVATE KEY")
SOURCE_CODE = b'KEY_HEADER = "-----BEGIN PRIVATE KEY-----"  # code that parses keys is not a key\n'


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _compress(data: bytes, compression: str) -> bytes:
    if compression == "gz":
        return gzip.compress(data)
    if compression == "zst":
        return zstandard.ZstdCompressor().compress(data)
    return data


def _archive(layers: list[bytes]) -> io.BytesIO:
    """An OCI-layout `docker save`: index, config and layer blobs."""
    files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": b"{}",
             "blobs/sha256/config": b'{"architecture": "amd64"}'}
    files.update({f"blobs/sha256/layer{number}": layer for number, layer in enumerate(layers)})
    return io.BytesIO(_tar(files))


@pytest.mark.parametrize("compression", ["plain", "gz", "zst"])
def test_every_layer_is_read_whatever_its_compression(compression):
    first = _tar({"etc/ssl/bundle.pem": PEM_CERTIFICATE + PEM_KEY, "app/keys.py": SOURCE_CODE,
                  "home/u/.pgpass": b"db:5432:*:u:pw\n"})
    second = _tar({"tmp/leftover": b"x" * 100 + b"generated-secret-value" + b"y" * 100})
    archive = _archive([_compress(first, compression), _compress(second, compression)])
    found = {(f.path, f.reason) for f in images.scan_archive(archive, "probe", [b"generated-secret-value"])}
    assert found == {("etc/ssl/bundle.pem", "a private key"), ("home/u/.pgpass", "a credentials file"),
                     ("tmp/leftover", "contains a generated secret of this kit")}


def test_an_archive_without_a_readable_layer_is_an_error_not_a_clean_result():
    with pytest.raises(KitError, match="holds no layer"):
        images.scan_archive(io.BytesIO(_tar({"manifest.json": b"[]", "blobs/sha256/x": b"\x00" * 1024})), "probe")


@contextmanager
def recompressed(saved: Path, compression: str) -> Iterator[io.BufferedReader]:
    """A copy of a `docker save` archive whose layers are compressed, as the containerd image store saves them."""
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(saved) as source:
        out_path = Path(tmp) / f"saved-{compression}.tar"
        with tarfile.open(out_path, "w") as out:
            for member in source.getmembers():
                data = source.extractfile(member).read() if member.isfile() else None
                if data is not None and data[257:262] == b"ustar":
                    data = _compress(data, compression)
                    member.size = len(data)
                out.addfile(member, io.BytesIO(data) if data is not None else None)
        with out_path.open("rb") as handle:
            yield handle


def test_a_key_compiled_into_a_binary_is_not_a_key_file_but_a_secret_in_one_is_found():
    binary = b"\x7fELF\x00\x00" + PEM_KEY + b"\x00generated-secret-value\x00"
    found = {(f.path, f.reason) for f in images.scan_archive(_archive([_tar({"usr/lib/libtls.so": binary})]),
                                                              "probe", [b"generated-secret-value"])}
    assert found == {("usr/lib/libtls.so", "contains a generated secret of this kit")}
