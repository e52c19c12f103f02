"""The dashboard's forms: URL-encoded bodies, read with a size bound, CSRF checked first."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import Request

from jobsched.api.ui.sessions import CSRF_FIELD, CsrfRefused, Viewer

FORM_BYTES_MAX = 256 * 1024
_FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Form:
    fields: list[tuple[str, str]]

    def get(self, name: str, default: str = "") -> str:
        for key, value in self.fields:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def optional(self, name: str) -> str | None:
        """The field stripped, or None when it is absent or blank."""
        value = self.get(name).strip()
        return value or None


async def read_form(request: Request) -> Form:
    """The form of a POST; ``CsrfRefused`` for any body that is not a small URL-encoded form."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise CsrfRefused
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES_MAX:
            raise CsrfRefused
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):  # not UTF-8, or too many fields
        raise CsrfRefused from None
    return Form(fields)


async def checked_form(request: Request, viewer: Viewer) -> Form:
    """The POSTed form, once its CSRF token is the viewer's."""
    form = await read_form(request)
    viewer.check_csrf(form.get(CSRF_FIELD) or None)
    return form
