"""Front-end assets the service serves itself (no CDN): ReDoc, taken from the npm registry and checked."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import urllib.request
from pathlib import Path

REDOC_VERSION = "2.5.2"
REDOC_TARBALL = f"https://registry.npmjs.org/redoc/-/redoc-{REDOC_VERSION}.tgz"
REDOC_INTEGRITY = "sha512-sTJfItvRkcDTojB6wdLN4M+Ua6mlZwElV21Tf8Mn7IbQF/1Os6GvgQpZyLWPGZZHbhy7GC1Or1hTMHfz1vKh5A=="
REDOC_FILES = {
    "package/bundles/redoc.standalone.js": "redoc.standalone.js",
    "package/bundles/redoc.standalone.js.LICENSE.txt": "redoc.standalone.js.LICENSE.txt",
    "package/LICENSE": "LICENSE",
}


def redoc_dir(assets_dir: str) -> Path:
    return Path(assets_dir) / "redoc"


def redoc_present(assets_dir: str) -> bool:
    return (redoc_dir(assets_dir) / "redoc.standalone.js").is_file()


def fetch_redoc(assets_dir: str, timeout: float = 60.0) -> Path:
    """Download the pinned ReDoc package from the npm registry, verify its integrity hash, unpack the bundle."""
    target = redoc_dir(assets_dir)
    with urllib.request.urlopen(REDOC_TARBALL, timeout=timeout) as response:
        tarball = response.read()
    algorithm, expected = REDOC_INTEGRITY.split("-", 1)
    actual = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if actual != expected:
        raise RuntimeError(f"{REDOC_TARBALL} does not match its pinned {algorithm} integrity hash")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member, name in REDOC_FILES.items():
            extracted = archive.extractfile(member)
            if extracted is None:
                raise RuntimeError(f"{REDOC_TARBALL} has no file {member}")
            (target / name).write_bytes(extracted.read())
    return target
