"""What the QuickBooks, Salesforce and Stripe connectors share: one retry policy at the HTTP layer,
and one error that names the system and the cause (never a credential).

The retry policy is urllib3's `Retry`, mounted on the `requests.Session` each client library sends
through: HTTP 429 and 5xx are retried with exponential backoff and jitter, honouring `Retry-After`;
4xx are not retried; connection errors are. Settings (environment):

- `ARFLOW_HTTP_RETRIES` (default 5): retries after the first attempt;
- `ARFLOW_HTTP_BACKOFF` (default 1.0): seconds; the n-th retry waits about BACKOFF * 2**(n-1),
  plus up to half of BACKOFF of jitter, at most 60 s (a `Retry-After` from the server wins);
- `ARFLOW_HTTP_TIMEOUT` (default 60): seconds per request.
"""

from __future__ import annotations

import os
import re

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connectors.sources import SourceError

RETRY_STATUSES = (429, 500, 502, 503, 504)


class ConnectorError(SourceError):
    """A connected system could not be read or written. The message names the system and the cause.
    `transient`: the failure may pass (the system unreachable, timing out, throttling or failing with
    5xx after the HTTP layer's retries), so the hop is worth running again later; a refusal (4xx, bad
    credentials, a short pull) is not."""

    def __init__(self, system: str, what: str, cause: str, *, transient: bool = False):
        self.system, self.what, self.cause, self.transient = system, what, redact(cause), transient
        super().__init__(f"{system}: {what} failed: {self.cause}")


_SECRET_RE = re.compile(r"(?i)(bearer\s+|access_token[\"'=: ]+|refresh_token[\"'=: ]+|client_secret[\"'=: ]+|"
                        r"sk_(?:test|live)_|rk_(?:test|live)_|whsec_)[A-Za-z0-9._\-]+")


def redact(text: str) -> str:
    """The text with anything shaped like a token or key replaced."""
    return _SECRET_RE.sub(lambda m: m.group(1) + "[redacted]", str(text))[:500]


def retry_policy() -> Retry:
    backoff = float(os.environ.get("ARFLOW_HTTP_BACKOFF", "1.0"))
    return Retry(total=int(os.environ.get("ARFLOW_HTTP_RETRIES", "5")), connect=None, read=None,
                 status_forcelist=RETRY_STATUSES, allowed_methods=None,  # every method: reads are POSTed
                 backoff_factor=backoff, backoff_jitter=backoff / 2, backoff_max=60,
                 respect_retry_after_header=True, raise_on_status=True)


class _TimeoutAdapter(HTTPAdapter):
    def send(self, request, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = float(os.environ.get("ARFLOW_HTTP_TIMEOUT", "60"))
        return super().send(request, **kwargs)


def with_retries(session: requests.Session) -> requests.Session:
    """Mount the retry policy (and a default timeout) on a session; returns it."""
    adapter = _TimeoutAdapter(max_retries=retry_policy())
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def is_transient(exc: BaseException) -> bool:
    """An HTTP-layer failure that may pass: retries exhausted on 429/5xx, no connection, a timeout."""
    return isinstance(exc, (requests.exceptions.RetryError, requests.exceptions.ConnectionError,
                            requests.exceptions.Timeout, ConnectionError, TimeoutError))


def transient_status(status) -> bool:
    """An HTTP status a later attempt may not get again (throttled, the server failing)."""
    try:
        return int(status) in RETRY_STATUSES
    except (TypeError, ValueError):
        return False


def describe(exc: BaseException) -> str:
    """A short cause for an HTTP-layer failure: the status and the server's message where known."""
    if isinstance(exc, requests.exceptions.RetryError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return f"still failing after {os.environ.get('ARFLOW_HTTP_RETRIES', '5')} retries ({reason or exc})"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"cannot connect ({exc.__class__.__name__})"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    return f"{exc.__class__.__name__}: {exc}"
