"""The REST API: ``create_app(storage, queue, settings)`` builds it; the CLI serves it."""

from jobsched.api.app import create_app

__all__ = ["create_app"]
