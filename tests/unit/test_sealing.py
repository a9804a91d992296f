"""Header values at rest: sealed with the headers key, opened only with it, for that task only."""

from __future__ import annotations

import json

import pytest

from callme.headers import HeaderSet, SealedHeaders
from callme.sealing import HeaderVault, SealingError, key_texts, new_key

KEY = "k" * 40
OTHER = "o" * 40
HEADERS = HeaderSet((("Authorization", "Bearer s3cr3t-t0k3n"), ("X-Tenant", "acme")))


def vault(document: str | None) -> HeaderVault:
    return HeaderVault(lambda: document)


def test_sealed_headers_keep_their_names_and_hide_their_values() -> None:
    sealed = vault(KEY).seal("job", HEADERS)
    assert sealed.names == ("Authorization", "X-Tenant")
    assert sealed.sealed.startswith("v1.")
    assert "s3cr3t" not in sealed.sealed and "acme" not in sealed.sealed


def test_sealed_headers_open_to_what_was_sealed() -> None:
    sealed = vault(KEY).seal("job", HEADERS)
    assert vault(KEY).reveal("job", sealed) == HEADERS


def test_sealing_is_deterministic_so_equal_definitions_stay_equal() -> None:
    assert vault(KEY).seal("job", HEADERS) == vault(KEY).seal("job", HEADERS)
    other_values = HeaderSet((("Authorization", "Bearer other"), ("X-Tenant", "acme")))
    assert vault(KEY).seal("job", other_values) != vault(KEY).seal("job", HEADERS)


def test_headers_in_clear_or_already_sealed_pass_through() -> None:
    sealed = vault(KEY).seal("job", HEADERS)
    assert vault(KEY).seal("job", sealed) is sealed
    assert vault(None).reveal("job", HEADERS) is HEADERS


def test_values_moved_to_another_task_do_not_open() -> None:
    sealed = vault(KEY).seal("job", HEADERS)
    with pytest.raises(SealingError, match="do not open"):
        vault(KEY).reveal("other-job", sealed)


def test_values_moved_to_other_header_names_do_not_open() -> None:
    sealed = vault(KEY).seal("job", HEADERS)
    swapped = SealedHeaders(("X-Tenant", "Authorization"), sealed.sealed)
    with pytest.raises(SealingError, match="do not open"):
        vault(KEY).reveal("job", swapped)


def test_damaged_text_does_not_open() -> None:
    sealed = vault(KEY).seal("job", HEADERS)
    flipped = sealed.sealed[:-3] + ("A" if sealed.sealed[-3] != "A" else "B") + sealed.sealed[-2:]
    for text in (flipped, sealed.sealed + "x", "v1.", "v2" + sealed.sealed[2:], "v1.nokey.!!!"):
        with pytest.raises(SealingError):
            vault(KEY).reveal("job", SealedHeaders(sealed.names, text))


def test_another_key_does_not_open_and_the_error_names_the_key_id_not_the_values() -> None:
    sealed = vault(KEY).seal("job", HEADERS)
    key_id = sealed.sealed.split(".")[1]
    with pytest.raises(SealingError) as refused:
        vault(OTHER).reveal("job", sealed)
    assert key_id in refused.value.message and "s3cr3t" not in refused.value.message


def test_a_rotation_seals_with_current_and_opens_with_previous() -> None:
    old = vault(KEY).seal("job", HEADERS)
    rotated = vault(json.dumps({"current": OTHER, "previous": KEY}))
    assert rotated.reveal("job", old) == HEADERS
    new = rotated.seal("job", HEADERS)
    assert new.sealed.split(".")[1] != old.sealed.split(".")[1]
    assert vault(OTHER).reveal("job", new) == HEADERS


def test_without_a_key_nothing_is_sealed_or_opened() -> None:
    with pytest.raises(SealingError, match="no headers key"):
        vault(None).seal("job", HEADERS)
    with pytest.raises(SealingError, match="no headers key"):
        vault("").reveal("job", SealedHeaders(("A",), "v1.x.y"))


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("short", "at least 32 characters"),
        ('{"current": "short"}', "at least 32 characters"),
        ('{"current": ""}', "holds no key"),
        ('{"current": 5}', "must be strings"),
        (json.dumps({"current": KEY, "previous": 5}), "must be strings"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_key_document_is_refused_saying_why(document: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        key_texts(document)
    with pytest.raises(SealingError, match=problem):
        vault(document).seal("job", HEADERS)


def test_new_keys_are_long_and_distinct() -> None:
    keys = {new_key() for _ in range(10)}
    assert len(keys) == 10 and all(len(k) >= 32 for k in keys)
