"""What the API can already see an ``http`` job's worker would refuse to call.

The worker checks the address it actually connects to (``worker.handlers.http_network``);
this is the early, partial check the API makes on ``payload.url`` so that a job
bound to fail is refused at once, with a 422 naming the field: a scheme other than
http or https, credentials in the URL, or a host that is, however it is spelt, a
literal address in a range the API's own ``worker.http.allowed_networks`` does not
admit (``localhost`` included). A name that only DNS can resolve is left to the
worker.
"""

from __future__ import annotations

import httpx

from jobsched.core.errors import InvalidInputError
from jobsched.core.models import JsonObject
from jobsched.core.network_policy import ALLOWED_NETWORKS_SETTING, NetworkPolicy

HTTP_JOB_TYPE = "http"
_FIELD = "payload.url"


def check_http_target(payload: JsonObject, policy: NetworkPolicy) -> None:
    """Raise ``InvalidInputError("payload.url", ...)`` for a URL workers would refuse.

    A missing or non-string ``url`` is not judged here: the payload's shape is
    checked on its own, and the worker refuses it too.
    """
    value = payload.get("url")
    if not isinstance(value, str):
        return
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as error:
        raise InvalidInputError(_FIELD, f"is not a valid URL: {error}") from error
    if url.scheme not in {"http", "https"}:
        raise InvalidInputError(_FIELD, "must be an http or https URL")
    if url.userinfo:
        raise InvalidInputError(
            _FIELD,
            "must not hold credentials (user:password@); send them in a header, "
            'e.g. "Authorization": {"from_env": "VARIABLE_NAME"}',
        )
    refusal = policy.refusal_for_host(url.host)
    if refusal is not None:
        of_host = "" if refusal.host == str(refusal.address) else f" ({refusal.host})"
        raise InvalidInputError(
            _FIELD,
            f"points at {refusal.address}{of_host}, a {refusal.category} address that "
            f"workers refuse to call unless {ALLOWED_NETWORKS_SETTING} admits it",
        )
