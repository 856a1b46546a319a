"""Core errors map to the right classes, with the stable code and the details."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import acikit
from acikit import _native

from conftest import write_layout


def test_every_code_has_a_class_per_category() -> None:
    from acikit._errors import error_class

    categories: dict[str, set[type[acikit.AcikitError]]] = {}
    for code, category, _retryable in _native.ERROR_CODES:
        cls = error_class(code, category)
        assert issubclass(cls, acikit.AcikitError)
        assert cls.category_code == category, code
        categories.setdefault(category, set()).add(cls)
    assert len(categories) == 12
    assert error_class("ambiguous_image", "input") is acikit.AmbiguousId
    assert error_class("discovery_failed", "network") is acikit.DiscoveryError


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(acikit.NotFound) as info:
        acikit.validate(tmp_path / "missing.aci")
    err = info.value
    assert isinstance(err, FileNotFoundError) and isinstance(err, acikit.AcikitError)
    assert err.code == "not_found" and err.category == "not_found" and not err.retryable


def test_missing_image_is_not_found(store: acikit.Store) -> None:
    with pytest.raises(FileNotFoundError) as info:
        store.get("sha512-0123")
    assert isinstance(info.value, acikit.NotFound)


def test_invalid_archive_names_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "bad.aci"
    bad.write_bytes(gzip.compress(b"not a tar" * 100))
    with pytest.raises(acikit.InvalidImage) as info:
        acikit.validate(bad)
    assert isinstance(info.value, ValueError)
    assert info.value.category == "invalid_image"
    assert info.value.code in {"not_a_tar", "truncated_archive"}


def test_invalid_manifest_lists_problems(tmp_path: Path) -> None:
    layout = write_layout(tmp_path, "example.com/bad", "1.0.0")
    manifest = json.loads((layout / "manifest").read_text())
    manifest["name"] = "Not A Name"
    manifest["labels"].append({"name": "version", "value": "2"})
    (layout / "manifest").write_text(json.dumps(manifest))
    with pytest.raises(acikit.InvalidImage) as info:
        acikit.build(layout, tmp_path / "bad.aci")
    err = info.value
    assert err.code == "invalid_manifest"
    paths = {p["path"] for p in err.problems}
    assert "$.name" in paths and len(err.problems) >= 2
    assert all(p["message"] for p in err.problems)


def test_bad_arguments_are_input_errors(store: acikit.Store, small_aci: Path) -> None:
    store.import_file(small_aci)
    with pytest.raises(acikit.InputError) as info:
        store.export("example.com/hello", small_aci.with_suffix(".x"), compression="lz4")
    assert info.value.code == "invalid_argument" and isinstance(info.value, ValueError)
    with pytest.raises(ValueError):
        store.find("Not A Name")
    with pytest.raises(TypeError):
        store.export(42, "x")  # type: ignore[arg-type]


def test_exception_repr_and_str(store: acikit.Store) -> None:
    with pytest.raises(acikit.AcikitError) as info:
        store.get("sha512-00")
    assert repr(info.value).startswith("NotFound(code='not_found'")
    assert "sha512-00" in str(info.value)
