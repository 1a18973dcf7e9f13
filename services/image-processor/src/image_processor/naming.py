"""Where a rendition goes: `<prefix>/<key-stem>/<rendition>.<ext>`, never anywhere else.

Keys come from events, and events can be forged: a key with `..` segments, a leading `/`,
backslashes or control characters must not place output outside the prefix or produce a
key that means something else to another tool. Such keys are cleaned, and a short hash of
the original key keeps two different uploads from ever sharing a stem.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import Final

_UNSAFE: Final = re.compile(r"[\x00-\x1f\x7f\\]")
_MAX_STEM_BYTES: Final = 512  # S3 keys are at most 1024 bytes; leave room for the rest


def key_stem(key: str) -> str:
    """`photos/cat.jpg` -> `photos/cat`; unsafe keys -> a cleaned stem plus a hash."""
    head, _, name = key.rpartition("/")
    base, dot, _ = name.rpartition(".")
    stem_name = base if dot and base.strip(".") else name
    raw = f"{head}/{stem_name}" if head else stem_name
    parts = [_UNSAFE.sub("_", part) for part in raw.split("/")]
    safe = "/".join(part for part in parts if part not in ("", ".", ".."))
    if safe == raw and 0 < len(safe.encode()) <= _MAX_STEM_BYTES:
        return safe
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    shortened = safe.encode()[:_MAX_STEM_BYTES].decode("utf-8", "ignore").rstrip("/.")
    return f"{shortened}-{digest}" if shortened else digest


def rendition_key(prefix: str, key: str, rendition: str, extension: str) -> str:
    """The object key of one rendition of the upload `key`."""
    result = f"{prefix}/{key_stem(key)}/{rendition}.{extension}"
    if posixpath.normpath(result) != result or not result.startswith(f"{prefix}/"):
        raise ValueError(f"unsafe rendition key {result!r}")  # unreachable: a guard, not a path
    return result
