"""Download of the official CIFAR-10 python archive, with an md5 check."""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from lightning_compress.data.errors import DatasetError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"


def fetch_url(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Stream ``url`` into the file ``dest`` (network access; replaced by a stub in tests)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)


def file_md5(path: Path) -> str:
    """Hex md5 of a file, read in 1 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_cifar10(root: Path, url: str | None = None, md5: str | None = None) -> Path:
    """Download the official archive into ``root`` (created if needed), check its md5, return its path.

    The file is written as ``<name>.part`` and renamed only after the md5 matches, so a failed or interrupted
    download never leaves a file that looks complete.
    """
    url = url or CIFAR10_URL
    md5 = md5 or CIFAR10_MD5
    dest = Path(root) / CIFAR10_ARCHIVE
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fetch_url(url, part)
    except (urllib.error.URLError, OSError) as err:
        part.unlink(missing_ok=True)
        raise DatasetError(f"could not download {url} to {dest}: {err}. Download it by hand into {dest.parent} "
                           "or point `root` at an existing copy.") from None
    got = file_md5(part)
    if got != md5:
        part.unlink(missing_ok=True)
        raise DatasetError(f"{url} downloaded to {part} has md5 {got}, expected {md5}; the file was removed. "
                           "Retry, or download it by hand.")
    part.replace(dest)
    return dest
