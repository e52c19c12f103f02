"""``/schedules/preview``: fire times of an expression, DST included."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import httpx

from jobsched.storage.database import SQLStorage
from tests.integration.api.api_assertions import assert_problem


async def test_cron_preview_follows_the_dst_change(api: httpx.AsyncClient) -> None:
    response = await api.get(
        "/schedules/preview",
        params={
            "schedule": "0 9 * * *",
            "timezone": "Europe/Berlin",
            "count": 3,
            "after": "2025-03-28T00:00:00Z",
        },
    )

    assert response.status_code == 200, response.text
    # Berlin moves from UTC+1 to UTC+2 on 30 March 2025.
    assert response.json() == {
        "schedule": "0 9 * * *",
        "timezone": "Europe/Berlin",
        "fire_times": ["2025-03-28T08:00:00Z", "2025-03-29T08:00:00Z", "2025-03-30T07:00:00Z"],
    }


async def test_six_field_cron_has_seconds_first(api: httpx.AsyncClient) -> None:
    response = await api.get(
        "/schedules/preview",
        params={"schedule": "*/20 * * * * *", "count": 3, "after": "2025-01-01T00:00:00Z"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["fire_times"] == [
        "2025-01-01T00:00:20Z",
        "2025-01-01T00:00:40Z",
        "2025-01-01T00:01:00Z",
    ]


async def test_every_is_anchored_at_after(api: httpx.AsyncClient) -> None:
    response = await api.get(
        "/schedules/preview",
        params={"schedule": "@every 1h30m", "count": 2, "after": "2025-06-01T10:15:00+02:00"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["fire_times"] == ["2025-06-01T09:45:00Z", "2025-06-01T11:15:00Z"]


async def test_preview_defaults_to_five_times_after_now(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    before = await storage.now()
    response = await api.get("/schedules/preview", params={"schedule": "@every 1m"})
    after = await storage.now()

    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["timezone"] == "UTC"
    times = [datetime.fromisoformat(text) for text in preview["fire_times"]]
    assert len(times) == 5
    assert before + timedelta(minutes=1) <= times[0] <= after + timedelta(minutes=1)
    assert [later - earlier for earlier, later in itertools.pairwise(times)] == [
        timedelta(minutes=1)
    ] * 4


async def test_bad_preview_queries_name_the_parameter(api: httpx.AsyncClient) -> None:
    cases = {
        "schedule": {"schedule": "every tuesday"},
        "timezone": {"schedule": "@daily", "timezone": "Atlantis/Capital"},
        "after": {"schedule": "@daily", "after": "yesterday"},
    }
    for field, params in cases.items():
        assert_problem(await api.get("/schedules/preview", params=params), 422, field)
    assert_problem(
        await api.get(
            "/schedules/preview", params={"schedule": "@daily", "after": "2025-01-01T00:00"}
        ),
        422,
        "after",
    )
    assert_problem(
        await api.get("/schedules/preview", params={"schedule": "0 0 31 2 *"}), 422, "schedule"
    )
    for count in ("0", "101", "many"):
        response = await api.get(
            "/schedules/preview", params={"schedule": "@daily", "count": count}
        )
        assert_problem(response, 422, "count")
    assert_problem(await api.get("/schedules/preview"), 422, "schedule")
