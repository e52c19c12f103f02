"""``AsyncClient``: the REST API from asyncio code, on httpx; the same methods as ``Client``.

async with AsyncClient("http://127.0.0.1:8080", token="...") as client:
    job = await client.jobs.create(type="noop", name="tick", schedule="@every 1m")
    async for run in client.jobs.runs(job.id, limit=10):
        print(run.status)
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from jobsched.client import calls, transport
from jobsched.client.calls import Call, Id
from jobsched.client.errors import WaitTimeoutError
from jobsched.client.models import (
    AuditRecord,
    Job,
    Run,
    RunDetail,
    SchedulePreview,
    Token,
    TokenCreated,
    Worker,
)

M = TypeVar("M", bound=BaseModel)


class AsyncClient:
    """One connection pool to one API. ``url`` and ``token`` default to ``$JOBSCHED_URL``
    and ``$JOBSCHED_TOKEN``; ``timeout`` is in seconds, per request."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = transport.DEFAULT_TIMEOUT_SECONDS,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, self.token = transport.resolve(url, token)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=transport.headers(self.token),
            timeout=timeout,
            transport=http_transport or httpx.AsyncHTTPTransport(retries=transport.CONNECT_RETRIES),
        )
        self.jobs = Jobs(self)
        self.runs = Runs(self)
        self.workers = Workers(self)
        self.schedules = Schedules(self)
        self.tokens = Tokens(self)
        self.audit = Audit(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call) -> Any:
        """The decoded answer; ``ApiError`` or ``UnreachableError`` otherwise."""
        try:
            response = await self._http.request(
                call.method,
                call.path,
                params=call.params or None,
                json=call.body,
                headers=call.headers or None,
            )
        except httpx.TransportError as error:
            raise transport.unreachable(self.url, error) from error
        return transport.answer(response)

    async def one(self, call: Call, model: type[M]) -> M:
        return model.model_validate(await self.send(call))

    async def pages(
        self, call: Call, model: type[M], *, limit: int | None, page_size: int | None
    ) -> AsyncIterator[M]:
        """Every item of every page, following ``next_cursor``; at most ``limit`` items."""
        size = calls.page_size_for(limit, page_size)
        cursor: str | None = None
        given = 0
        while True:
            page = await self.send(call.with_cursor(cursor, size))
            for item in page["items"]:
                if limit is not None and given >= limit:
                    return
                given += 1
                yield model.model_validate(item)
            cursor = page.get("next_cursor")
            if cursor is None or (limit is not None and given >= limit):
                return


class _Resource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client


class Jobs(_Resource):
    def list(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        queue: str | None = None,
        limit: int | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Job]:
        """Jobs in creation order, every page (at most ``limit`` jobs)."""
        call = Call("GET", "/jobs", calls.query(type=type, status=status, queue=queue))
        return self._client.pages(call, Job, limit=limit, page_size=page_size)

    async def get(self, job_id: Id) -> Job:
        return await self._client.one(Call("GET", calls.job_path(job_id)), Job)

    async def create(
        self,
        body: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """``POST /jobs`` with the fields of ``body`` and then ``fields``.

        With ``idempotency_key``, a repeat (a retry after a lost answer, say) gets the
        job the first request created instead of a second job.
        """
        return await self._client.one(
            Call(
                "POST",
                "/jobs",
                body=calls.job_body(body, fields),
                headers=calls.idempotency(idempotency_key),
            ),
            Job,
        )

    async def update(
        self, job_id: Id, body: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> Job:
        """``PATCH /jobs/{id}``: only the fields given change."""
        call = Call("PATCH", calls.job_path(job_id), body=calls.job_body(body, fields))
        return await self._client.one(call, Job)

    async def delete(self, job_id: Id) -> None:
        await self._client.send(Call("DELETE", calls.job_path(job_id)))

    async def trigger(
        self,
        job_id: Id,
        *,
        payload: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """A run due now; ``payload`` replaces the job's for this run only.

        With ``idempotency_key``, a repeat gets the first request's run, not another.
        """
        body = {"payload": dict(payload)} if payload is not None else None
        return await self._client.one(
            Call(
                "POST",
                calls.job_path(job_id, "trigger"),
                body=body,
                headers=calls.idempotency(idempotency_key),
            ),
            Run,
        )

    async def pause(self, job_id: Id) -> Job:
        return await self._client.one(Call("POST", calls.job_path(job_id, "pause")), Job)

    async def resume(self, job_id: Id) -> Job:
        return await self._client.one(Call("POST", calls.job_path(job_id, "resume")), Job)

    def runs(
        self, job_id: Id, *, status: str | None = None, limit: int | None = None
    ) -> AsyncIterator[Run]:
        """The job's runs, newest first."""
        call = Call("GET", calls.job_path(job_id, "runs"), calls.query(status=status))
        return self._client.pages(call, Run, limit=limit, page_size=None)


class Runs(_Resource):
    def list(
        self, *, job_id: Id | None = None, status: str | None = None, limit: int | None = None
    ) -> AsyncIterator[Run]:
        """Runs newest fire time first (of one job with ``job_id``)."""
        path = calls.job_path(job_id, "runs") if job_id is not None else "/runs"
        call = Call("GET", path, calls.query(status=status))
        return self._client.pages(call, Run, limit=limit, page_size=None)

    async def get(self, run_id: Id) -> RunDetail:
        return await self._client.one(Call("GET", calls.run_path(run_id)), RunDetail)

    async def cancel(self, run_id: Id) -> Run:
        return await self._client.one(Call("POST", calls.run_path(run_id, "cancel")), Run)

    async def retry(self, run_id: Id) -> Run:
        return await self._client.one(Call("POST", calls.run_path(run_id, "retry")), Run)

    async def wait(
        self,
        run_id: Id,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the same call as Client.runs.wait
        interval: float = 0.5,
    ) -> RunDetail:
        """Poll the run until it ends (succeeded, dead, cancelled or skipped); return it.

        ``WaitTimeoutError`` if it has not ended within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = await self.get(run_id)
            if run.is_final:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(str(run_id), run.status, timeout or 0.0)
            await asyncio.sleep(interval)


class Workers(_Resource):
    async def list(self, *, status: str | None = None) -> builtins.list[Worker]:
        answer = await self._client.send(Call("GET", "/workers", calls.query(status=status)))
        return [Worker.model_validate(item) for item in answer["items"]]


class Schedules(_Resource):
    async def preview(
        self,
        schedule: str,
        *,
        timezone: str = "UTC",
        count: int = 5,
        after: datetime | str | None = None,
    ) -> SchedulePreview:
        params = calls.query(schedule=schedule, timezone=timezone, count=count, after=after)
        return await self._client.one(Call("GET", "/schedules/preview", params), SchedulePreview)


class Tokens(_Resource):
    async def create(
        self,
        name: str,
        role: str,
        *,
        queues: Sequence[str] | None = None,
        expires_in_seconds: float | None = None,
    ) -> TokenCreated:
        body = calls.query(
            name=name,
            role=role,
            queues=list(queues) if queues is not None else None,
            expires_in_seconds=expires_in_seconds,
        )
        return await self._client.one(Call("POST", "/tokens", body=body), TokenCreated)

    async def list(self) -> builtins.list[Token]:
        answer = await self._client.send(Call("GET", "/tokens"))
        return [Token.model_validate(item) for item in answer["items"]]

    async def revoke(self, name_or_id: str) -> Token:
        return await self._client.one(Call("DELETE", f"/tokens/{name_or_id}"), Token)


class Audit(_Resource):
    def list(
        self,
        *,
        action: str | None = None,
        target_kind: str | None = None,
        target_id: str | None = None,
        token: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[AuditRecord]:
        """Audit rows newest first, every page (admin role)."""
        params = calls.query(
            action=action,
            target_kind=target_kind,
            target_id=target_id,
            token=token,
            since=since,
            until=until,
        )
        return self._client.pages(
            Call("GET", "/audit", params), AuditRecord, limit=limit, page_size=None
        )
