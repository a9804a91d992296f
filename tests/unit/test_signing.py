"""Standard Webhooks signatures, checked with the public reference library a receiver would use."""

from __future__ import annotations

import base64
import json
import secrets
import string
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from callme.signing import Signer, new_secret

BODY = json.dumps({"task": "simpletask", "n": 1})
MESSAGE_ID = "msg_0123456789abcdef"


def aws_generated_secret() -> str:
    """What Secrets Manager makes of PasswordLength 44 with ExcludePunctuation: 44 letters and digits."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(44))


def sign(signer: Signer, body: str = BODY) -> dict[str, str]:
    return signer.headers(MESSAGE_ID, int(time.time()), body)


def test_headers_verify_with_the_reference_library() -> None:
    # Given a signer holding a whsec_ key
    secret = new_secret()
    # When it signs a body
    headers = sign(Signer.from_secret_document(secret))
    # Then a receiver holding the key verifies it and gets the body back
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_headers_carry_the_message_id_and_timestamp() -> None:
    headers = Signer.from_secret_document(new_secret()).headers(MESSAGE_ID, 1_800_000_042, BODY)
    assert headers["webhook-id"] == MESSAGE_ID
    assert headers["webhook-timestamp"] == "1800000042"
    assert headers["webhook-signature"].startswith("v1,")


def test_non_json_payload_verifies_too() -> None:
    secret = new_secret()
    headers = sign(Signer.from_secret_document(secret), body="plain text, ünïcode")
    Webhook(secret).verify("plain text, ünïcode", headers, json_parse=False)


def test_tampered_body_fails_verification() -> None:
    secret = new_secret()
    headers = sign(Signer.from_secret_document(secret))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace("1", "2"), headers)


def test_changed_message_id_fails_verification() -> None:
    secret = new_secret()
    headers = {**sign(Signer.from_secret_document(secret)), "webhook-id": "msg_other"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers)


def test_another_key_fails_verification() -> None:
    headers = sign(Signer.from_secret_document(new_secret()))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_during_rotation_both_keys_sign_and_either_verifies() -> None:
    # Given a secret document in rotation: a current and a previous key
    current, previous = new_secret(), new_secret()
    signer = Signer.from_secret_document(json.dumps({"current": current, "previous": previous}))
    # When a body is signed
    headers = sign(signer)
    # Then the header holds two v1 signatures, separated by a space
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    assert signatures[0] != signatures[1]
    # And a receiver holding either key verifies, one holding neither does not
    assert Webhook(current).verify(BODY, headers) == json.loads(BODY)
    assert Webhook(previous).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_the_current_key_signs_first() -> None:
    current, previous = new_secret(), new_secret()
    both = sign(Signer.from_secret_document(json.dumps({"current": current, "previous": previous})))
    only_current = sign(Signer.from_secret_document(current))
    assert both["webhook-signature"].split(" ")[0] == only_current["webhook-signature"]


def test_document_outside_a_rotation_signs_once() -> None:
    current = new_secret()
    headers = sign(Signer.from_secret_document(json.dumps({"current": current, "previous": ""})))
    assert " " not in headers["webhook-signature"]
    Webhook(current).verify(BODY, headers)


def test_bare_base64_secret_as_aws_generates_it_is_accepted() -> None:
    # Given a key as Secrets Manager generates it: 44 letters and digits, no whsec_ prefix
    bare = aws_generated_secret()
    # When it signs, inside the document the template creates
    headers = sign(Signer.from_secret_document(json.dumps({"previous": "", "current": bare})))
    # Then receivers holding the key (with or without the prefix) verify
    Webhook("whsec_" + bare).verify(BODY, headers)
    Webhook(bare).verify(BODY, headers)


def test_surrounding_whitespace_of_a_secret_is_ignored() -> None:
    secret = new_secret()
    headers = sign(Signer.from_secret_document(f"  {secret}\n"))
    Webhook(secret).verify(BODY, headers)


@pytest.mark.parametrize(
    "document",
    [
        "",
        "   ",
        "whsec_",
        "not base64!",
        "whsec_***",
        "whsec_abc$",
        "{}",
        '{"current": "", "previous": ""}',
        '{"current": "not base64!"}',
        '{"current": 5}',
        '{"current": null, "previous": ["x"]}',
        '{"current": "abc',
    ],
)
def test_garbage_secret_is_a_value_error(document: str) -> None:
    with pytest.raises(ValueError):
        Signer.from_secret_document(document)


def test_new_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert new_secret() != secret


def test_new_secret_is_accepted_by_the_signer() -> None:
    assert Signer.from_secret_document(new_secret()).secrets[0].startswith("whsec_")
