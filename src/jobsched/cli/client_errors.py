"""The one-line error of a client command."""

from __future__ import annotations


class CliError(Exception):
    """A mistake to print as ``jobsched: error: <message>`` and exit 1, without a traceback."""
