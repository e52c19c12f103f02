"""Header values that are secrets are shown as ``***``; the payload itself is untouched."""

from __future__ import annotations

import pytest

from jobsched.core.redaction import HeaderRedaction, redact_headers, restore_redacted


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "authorization",
        "Proxy-Authorization",
        "Cookie",
        "X-Api-Key",
        "X-API-KEY",
        "X-Auth-Token",
        "X-Signing-Secret",
        "X-Hub-Signature-256",
        "X-Session-Id",
        "X-Db-Password",
        "ApiKey",
    ],
)
def test_secret_names_are_redacted(name: str) -> None:
    payload = {"url": "https://e.com", "headers": {name: "s3cret", "X-Team": "billing"}}
    assert redact_headers(payload) == {
        "url": "https://e.com",
        "headers": {name: "***", "X-Team": "billing"},
    }
    assert payload["headers"][name] == "s3cret"  # a copy is redacted, not the payload


def test_environment_references_are_shown_and_other_payloads_pass_through() -> None:
    reference = {"headers": {"Authorization": {"from_env": "BILLING_API_TOKEN"}}}
    assert redact_headers(reference) == reference
    assert redact_headers({"command": ["ls"]}) == {"command": ["ls"]}
    assert redact_headers({"headers": "not an object"}) == {"headers": "not an object"}


def test_the_pattern_adds_names_and_the_fixed_ones_stay() -> None:
    redaction = HeaderRedaction.from_pattern("x-team|x-tenant")
    shown = redact_headers(
        {"headers": {"X-Team": "a", "x-tenant": "b", "Cookie": "c", "X-Auth-Token": "d"}},
        redaction,
    )
    assert shown["headers"] == {
        "X-Team": "***",
        "x-tenant": "***",
        "Cookie": "***",
        "X-Auth-Token": "d",
    }


def test_stars_sent_back_restore_the_stored_value() -> None:
    old = {"headers": {"Authorization": "Bearer t", "X-Team": "a"}}
    new = {"headers": {"Authorization": "***", "X-Team": "***", "X-Api-Key": "***"}}
    assert restore_redacted(new, old) == {
        # X-Team is not redacted, so its stars are what the client means; X-Api-Key had no value.
        "headers": {"Authorization": "Bearer t", "X-Team": "***", "X-Api-Key": "***"}
    }
