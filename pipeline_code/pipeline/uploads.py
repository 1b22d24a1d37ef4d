"""An upload checked before it is handled, then copied into the work folder's ``raw/``.

Refused without reading a byte: a missing file, a symbolic link, anything but a regular file (a FIFO, a
device, a folder), a file over the size limit (from its size). The copy is streamed in chunks (memory
stays flat), hashed on the way, and keeps the input's permissions. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from datetime import datetime, timezone
from pathlib import Path

CHUNK_BYTES = 1 << 20


class UploadError(ValueError):
    """An upload refused before its content was read."""


def check_upload(data: Path, max_bytes: int) -> os.stat_result:
    """Refuse ``data`` unless it is a regular file (not a symlink) of at most ``max_bytes``."""
    try:
        info = os.lstat(data)
    except FileNotFoundError:
        raise UploadError(f"no such file: {data}") from None
    _check(data, info, max_bytes)
    return info


def new_run_id(sha256: str) -> str:
    """A local run's id: the UTC time and the upload's SHA-256 prefix."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{sha256[:8]}"


def receive_upload(data: Path, raw_dir: Path, max_bytes: int) -> tuple[Path, str]:
    """Check ``data``, then copy it into ``raw_dir`` as ``<run id>-<name>`` keeping its permissions.
    Returns the copy and the run id."""
    seen = check_upload(data, max_bytes)
    try:  # O_NOFOLLOW: a symlink swapped in after lstat is refused; O_NONBLOCK: a FIFO cannot hang us
        fd = os.open(data, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise UploadError(f"cannot open {data}: {err.strerror}") from None
    raw_dir.mkdir(parents=True, exist_ok=True)
    with os.fdopen(fd, "rb") as source:
        opened = os.fstat(source.fileno())
        if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
            raise UploadError(f"{data} was replaced while it was being read")
        _check(data, opened, max_bytes)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=raw_dir, prefix=".upload-", delete=False) as copy:
            tmp = Path(copy.name)
            try:
                copied = 0
                while chunk := source.read(CHUNK_BYTES):
                    copied += len(chunk)
                    if copied > max_bytes:
                        raise UploadError(f"{data} grew past the limit of {max_bytes} bytes while it was read")
                    digest.update(chunk)
                    copy.write(chunk)
                os.fchmod(copy.fileno(), stat.S_IMODE(opened.st_mode))
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    run_id = new_run_id(digest.hexdigest())
    raw = raw_dir / f"{run_id}-{data.name}"
    os.replace(tmp, raw)
    return raw, run_id


def _check(data: Path, info: os.stat_result, max_bytes: int) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise UploadError(f"{data} is a symbolic link; upload the file itself")
    if not stat.S_ISREG(info.st_mode):
        raise UploadError(f"{data} is not a regular file")
    if info.st_size > max_bytes:
        raise UploadError(f"[oversize] file is {info.st_size} bytes; the limit is {max_bytes} bytes")
