"""Build the kit's images (stacks/images/compose.yaml) from the configured base image; scan them for secrets."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import re
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from mlflowkit.docker import Compose, check_engine, engine_environ, image_exists, run, stream
from mlflowkit.errors import CommandError, KitError
from mlflowkit.settings import DEFAULT_BASE_IMAGE, Settings

BASE_LABEL = "org.mlflowkit.base-image"  # set by every Dockerfile: the base the image was built from
_EMPTY_CA = Path("/dev/null")
Log = Callable[[str], None]


def compose(settings: Settings, base: str | None = None) -> Compose:
    ca = settings.effective_ca_bundle() or _EMPTY_CA
    env = engine_environ({"BASE_IMAGE": base or settings.base_image or DEFAULT_BASE_IMAGE, "HOST_CA_BUNDLE": str(ca)})
    return Compose(files=(settings.images_compose_file,), project="mlflowkit-images", env=env,
                   timeout=settings.build_timeout)


def names(settings: Settings, *services: str) -> list[str]:
    """The image tags the stacks run (as the images compose file resolves them); of ``services`` if given."""
    out = compose(settings).call("config", "--images", *services)
    return [line.strip() for line in out.splitlines() if line.strip()]


def built_from(image: str) -> str | None:
    """The base image ``image`` was built from (its label), None if it is absent or unlabelled."""
    try:
        out = run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image], timeout=30).stdout
    except CommandError:
        return None
    return (json.loads(out) or {}).get(BASE_LABEL) or None


def base_image(settings: Settings) -> str:
    """The base to build from: BASE_IMAGE when set, else the one the existing images were built from (a user
    without a registry who built once with BASE_IMAGE need not export it in every shell), else the public one."""
    if settings.base_image:
        return settings.base_image
    for image in names(settings):
        remembered = built_from(image)
        if remembered:
            return remembered
    return DEFAULT_BASE_IMAGE


def ensure_base(base: str, log: Log) -> None:
    """The base image must exist locally or be pullable; say how to make one when neither holds."""
    if image_exists(base):
        return
    log(f"build: pulling base image {base}")
    try:
        run(["docker", "pull", base], timeout=300)
    except CommandError as exc:
        raise KitError(
            f"base image {base} is not here and cannot be pulled ({exc.message}).",
            hint="without a registry, make one: `bash stacks/images/base/debootstrap.sh mlflowkit/base:bookworm`, "
            "then `export BASE_IMAGE=mlflowkit/base:bookworm`.",
        ) from None


def services(settings: Settings) -> list[str]:
    """The images compose file's services: one per image the stacks run."""
    return compose(settings).call("config", "--services").split()


def build(settings: Settings, log: Log, services: list[str] | None = None, *, no_cache: bool = False) -> None:
    """Build (or refresh from cache; every layer again with ``no_cache``) every image, or those of ``services``: a
    compact progress view, the full log in a file."""
    check_engine()
    base = base_image(settings)
    ensure_base(base, log)
    log_dir = Path(settings.home) / ".logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"build-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.log"
    log(f"build: images from base {base} (full log: {path})")
    progress = BuildProgress(log)
    with path.open("w") as full:
        def on_line(line: str) -> None:
            full.write(line + "\n")
            progress.feed(line)

        try:
            compose(settings, base).build(services or [], timeout=settings.build_timeout, on_line=on_line,
                                          no_cache=no_cache)
        except CommandError as exc:
            raise KitError(f"image build failed after {progress.elapsed():.0f} s (exit {exc.returncode}).",
                           hint=f"the full log is {path}; its last lines are above.", details=exc.stderr) from None
    log(f"build: done in {progress.elapsed():.0f} s ({progress.steps} steps, {progress.cached} cached)")


# A BuildKit plain-progress line that starts a step: "#7 [mlflow 3/8] RUN pip install …" (stage name optional).
_STEP = re.compile(r"^#(\d+) \[(?:(\S+) )?(?:\S+ )?(\d+/\d+)\] (.*)$")


class BuildProgress:
    """Turns BuildKit's plain output (hundreds of lines) into one line per build step: image, step, elapsed."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.started = time.monotonic()
        self.steps = 0
        self.cached = 0
        self._vertex: dict[str, str] = {}  # "#7" -> "mlflow 3/8"

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def feed(self, line: str) -> None:
        match = _STEP.match(line)
        if match:
            vertex, image, step, command = match.groups()
            label = f"{image or '?'} {step}"
            if self._vertex.get(f"#{vertex}") != label:
                self._vertex[f"#{vertex}"] = label
                self.steps += 1
                self.log(f"build: {self.elapsed():5.0f} s  {label:<14} {' '.join(command.split())[:90]}")
            return
        number, _, rest = line.partition(" ")
        if rest == "CACHED" and number in self._vertex:
            self.cached += 1


def missing(settings: Settings) -> list[str]:
    return [image for image in names(settings) if not image_exists(image)]


def ensure(settings: Settings, log: Log) -> None:
    """Build the images only when one of them is missing."""
    absent = missing(settings)
    if absent:
        log(f"build: missing {', '.join(absent)}")
        build(settings, log)


# --- secrets scan -------------------------------------------------------------------------------------

# A whole PEM private key (a header alone, as in code that parses keys, is not one), wherever it sits in a text
# file: first, or after a certificate in a combined bundle. Binaries are not searched for it: libgnutls embeds a
# self-test key, and a PEM file is text (the generated-secret search below does read binaries).
_PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\r\n]+[A-Za-z0-9+/=\s:,-]{64,}?"
                          rb"-----END \1PRIVATE KEY-----")
_CREDENTIAL_FILES = re.compile(r"(^|/)(\.env|\.pgpass|\.netrc|\.aws/credentials|\.docker/config\.json)$|"
                               r"(^|/)run/secrets/.")


@dataclass(frozen=True)
class Finding:
    image: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.image}: /{self.path.lstrip('./')}: {self.reason}"


def scan(image: str, needles: Iterable[bytes] = (), *, timeout: float = 600) -> list[Finding]:
    """Read every file of every layer of ``image`` (``docker save``), byte for byte, and report the ones that
    are a private key, sit where credentials are kept, or contain one of ``needles`` (secret values).

    Layers are scanned as built, so a secret added by one layer and deleted by a later one is still found.
    """
    with stream(["docker", "save", image], timeout=timeout) as saved:
        return scan_archive(saved, image, needles)


def scan_archive(archive: IO[bytes], image: str, needles: Iterable[bytes] = ()) -> list[Finding]:
    """:func:`scan` of a ``docker save`` archive (Docker's layout or OCI's): layers uncompressed or compressed
    with gzip, zstd, bzip2 or xz (the containerd image store keeps them compressed). An archive in which no
    layer could be read is an error, never a clean result."""
    needles = [needle for needle in needles if len(needle) >= 8]
    findings: list[Finding] = []
    layers = 0
    with tarfile.open(fileobj=archive, mode="r|") as out:
        for member in out:
            raw = out.extractfile(member) if member.isfile() else None
            if raw is None:
                continue
            layer = _decompressed(raw)
            head = _read_up_to(layer, 512)
            if head[257:262] != b"ustar":  # manifests, configs, index: not a layer
                continue
            layers += 1
            with tarfile.open(fileobj=_Prepend(head, layer), mode="r|") as files:
                for item in files:
                    if item.isfile():
                        data = files.extractfile(item).read()  # type: ignore[union-attr]
                        findings += _findings(image, item.name, data, needles)
    if layers == 0:
        raise KitError(f"the saved archive of {image} holds no layer this scan can read.",
                       hint="report it with `docker save IMAGE | tar -t` attached.")
    return findings


def _findings(image: str, name: str, data: bytes, needles: list[bytes]) -> list[Finding]:
    found = []
    if b"\x00" not in data and _PRIVATE_KEY.search(data):
        found.append(Finding(image, name, "a private key"))
    if _CREDENTIAL_FILES.search(name):
        found.append(Finding(image, name, "a credentials file"))
    return found + [Finding(image, name, "contains a generated secret of this kit") for n in needles if n in data]


def _read_up_to(source: IO[bytes], size: int) -> bytes:
    """``size`` bytes (fewer only at the end): decompressors may return short reads."""
    chunks, left = [], size
    while left:
        chunk = source.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    """``raw`` (a layer blob) decompressed by its magic bytes; as it is when it is not compressed."""
    magic = raw.read(6)
    whole = _Prepend(magic, raw)
    buffered: IO[bytes] = io.BufferedReader(whole)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=buffered)  # type: ignore[return-value]  # a binary IO in all but name
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered)
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(buffered)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(buffered)
    return buffered


class _Prepend(io.RawIOBase):
    """``head`` followed by the rest of ``stream``: lets tarfile read a layer whose first block was peeked."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count], self._head = self._head[:count], self._head[count:]
            return count
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
