"""Rendition keys: hostile upload keys never place output outside the processed prefix."""

from __future__ import annotations

import posixpath

import pytest
from image_processor.naming import key_stem, rendition_key

pytestmark = pytest.mark.unit

HOSTILE = [
    "../../etc/passwd.jpg",
    "../secret.png",
    "/absolute/path.jpg",
    "//double/slash.jpg",
    "a/./b/../../../c.jpg",
    "..",
    ".",
    "/",
    "back\\slash\\..\\..\\x.jpg",
    "new\nline.jpg",
    "nul\x00byte.jpg",
    "escape\x1b[31m.jpg",
    "del\x7f.jpg",
    "a/" * 600 + "deep.jpg",
    "é" * 700 + ".jpg",
]


@pytest.mark.parametrize("key", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_keys_stay_inside_the_prefix(key: str) -> None:
    result = rendition_key("processed", key, "thumbnail", "webp")

    assert result.startswith("processed/")
    assert posixpath.normpath(result) == result
    assert result.endswith("/thumbnail.webp")
    segments = result.split("/")
    assert ".." not in segments and "." not in segments and "" not in segments
    assert not any(ord(c) < 32 or c in "\x7f\\" for c in result)
    assert len(result.encode()) <= 1024


def test_ordinary_keys_keep_their_path_and_lose_the_extension() -> None:
    assert rendition_key("processed", "photos/2024/cat.jpg", "medium", "webp") == (
        "processed/photos/2024/cat/medium.webp"
    )
    assert key_stem("cat") == "cat"
    assert key_stem("archive.tar.gz") == "archive.tar"
    assert key_stem(".profile") == ".profile"
    assert key_stem("über/straße.png") == "über/straße"


def test_cleaned_keys_never_collide_with_each_other_or_with_clean_ones() -> None:
    keys = ["a/b.jpg", "a//b.jpg", "/a/b.jpg", "a/./b.jpg", "a/../a/b.jpg", "a\\b.jpg", "a_b.jpg"]

    stems = {key_stem(k) for k in keys}

    assert len(stems) == len(keys)
    assert key_stem("a/b.jpg") == "a/b"


def test_the_same_key_always_gets_the_same_stem() -> None:
    assert key_stem("../x.jpg") == key_stem("../x.jpg")
