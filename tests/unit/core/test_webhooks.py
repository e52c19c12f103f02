"""Standard Webhooks signing, checked against a hand-computed HMAC and the spec's example."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from jobsched.core.webhooks import decode_secret, event_body, sign, signed_headers, verify

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def test_a_secret_decodes_to_its_key() -> None:
    assert decode_secret(SECRET) == KEY


@pytest.mark.parametrize(
    "secret", ["nope", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        decode_secret(secret)


def test_the_signature_is_hmac_sha256_over_id_timestamp_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(KEY, b"msg_1.1700000000." + body, hashlib.sha256).digest()

    assert sign(KEY, "msg_1", 1700000000, body) == "v1," + base64.b64encode(expected).decode()


def test_the_specs_example_signature() -> None:
    # The example of https://github.com/standard-webhooks/standard-webhooks spec.
    key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'

    assert (
        sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_verify_accepts_the_signed_headers_and_refuses_a_changed_body() -> None:
    body = event_body("run.dead", datetime(2026, 1, 1, tzinfo=UTC), {"run_id": "r1"})
    headers = signed_headers(KEY, "evt_1", 1700000000, body)

    assert verify(KEY, headers, body)
    assert not verify(KEY, headers, body + b" ")
    assert not verify(b"x" * 32, headers, body)
    assert not verify(KEY, {}, body)


def test_the_body_has_type_timestamp_and_data() -> None:
    body = event_body("run.dead", datetime(2026, 1, 1, tzinfo=UTC), {"run_id": "r1"})

    assert json.loads(body) == {
        "type": "run.dead",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "data": {"run_id": "r1"},
    }
