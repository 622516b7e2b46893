"""OAuth 2.0 access tokens for SMTP AUTH XOAUTH2: Microsoft 365 (msal, the client-credentials grant
of an app with SMTP.SendAsApp) and Google Workspace (google-auth: a service account with
domain-wide delegation acting as the SMTP user, or a user's refresh token).

A token is fetched once and reused until it is within `REFRESH_MARGIN` seconds of expiring; a
refused login (535) asks for a new one once (`token(force=True)`). Tokens never leave this module
except inside the XOAUTH2 string smtplib sends; errors name the system and the step, never a token.

Microsoft: https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
Google: https://developers.google.com/workspace/gmail/imap/xoauth2-protocol
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field

MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/{tenant}"
GOOGLE_SCOPE = "https://mail.google.com/"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
PROVIDERS = ("microsoft", "google")
REFRESH_MARGIN = 300.0  # seconds before expiry a token is replaced
TIMEOUT = 30             # seconds a token request may take


class TokenError(RuntimeError):
    """No token: says which provider and step, and whether a later attempt may succeed."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class OAuthSettings:
    provider: str                           # microsoft | google
    user: str                               # the mailbox: XOAUTH2's user=, Google's delegation subject
    tenant: str | None = None               # Microsoft: the directory (tenant) id or domain
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    authority: str | None = None            # Microsoft: replaces https://login.microsoftonline.com/{tenant}
    token_url: str | None = None            # Google: replaces https://oauth2.googleapis.com/token
    service_account_file: str | None = None  # Google: the service account's JSON key
    refresh_token: str | None = field(default=None, repr=False)  # Google: a user's refresh token

    def problems(self) -> list[str]:
        """What is missing, as (setting, what it is) phrases; empty when usable."""
        out = []
        if self.provider not in PROVIDERS:
            return [f"provider must be microsoft or google, got {self.provider!r}"]
        if not self.user:
            out.append("user (the mailbox that sends; ARFLOW_SMTP_USER)")
        if self.provider == "microsoft":
            if not self.client_id:
                out.append("client id (the app registration's; ARFLOW_SMTP_OAUTH_CLIENT_ID)")
            if not self.client_secret:
                out.append("client secret (ARFLOW_SMTP_OAUTH_CLIENT_SECRET)")
            if not (self.tenant or self.authority):
                out.append("tenant (the directory id or domain; ARFLOW_SMTP_OAUTH_TENANT)")
        elif not self.service_account_file:
            if not self.refresh_token:
                out.append("a service account key (ARFLOW_SMTP_OAUTH_SERVICE_ACCOUNT_FILE) or a refresh token "
                           "(ARFLOW_SMTP_OAUTH_REFRESH_TOKEN)")
            else:
                if not self.client_id:
                    out.append("client id of the OAuth client the refresh token was issued to "
                               "(ARFLOW_SMTP_OAUTH_CLIENT_ID)")
                if not self.client_secret:
                    out.append("its client secret (ARFLOW_SMTP_OAUTH_CLIENT_SECRET)")
        return out

    @property
    def describe(self) -> str:
        if self.provider == "microsoft":
            return f"Microsoft (tenant {self.tenant or self.authority})"
        return "Google (service account)" if self.service_account_file else "Google (refresh token)"


def xoauth2_string(user: str, token: str) -> str:
    """The XOAUTH2 initial client response, before base64 (smtplib encodes it)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


class TokenSource:
    """Access tokens for one mailbox, cached until near expiry. `clock` is seconds (monotonic)."""

    def __init__(self, settings: OAuthSettings, *, clock=time.monotonic, margin: float = REFRESH_MARGIN):
        self.settings, self.clock, self.margin = settings, clock, margin
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self._client = None
        self.fetches = 0  # how many tokens were asked for (check-connection prints it)

    @property
    def expires_in(self) -> float:
        return max(0.0, self._expires_at - self.clock())

    def token(self, *, force: bool = False) -> str:
        with self._lock:
            if force or self._token is None or self._expires_at - self.clock() <= self.margin:
                token, lifetime = self._fetch()
                self._token, self._expires_at = token, self.clock() + lifetime
                self.fetches += 1
            return self._token

    def _fetch(self) -> tuple[str, float]:
        if self.settings.provider == "microsoft":
            return self._microsoft()
        return self._google()

    # ---- Microsoft: msal's client-credentials grant ------------------------------------------
    def _microsoft(self) -> tuple[str, float]:
        import msal

        s = self.settings
        what = f"smtp: get an OAuth token from Microsoft (tenant {s.tenant or s.authority})"
        try:
            if self._client is None:
                authority = s.authority or MICROSOFT_AUTHORITY.format(tenant=s.tenant)
                custom = not authority.startswith("https://login.microsoftonline.com/")
                self._client = msal.ConfidentialClientApplication(
                    s.client_id, client_credential=s.client_secret, authority=authority, timeout=TIMEOUT,
                    **({"instance_discovery": False} if custom else {}))
            app = self._client
            # The cache decision is ours (a refused token must not come back from msal's cache).
            for entry in list(app.token_cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                app.token_cache.remove_at(entry)
            result = app.acquire_token_for_client(scopes=[MICROSOFT_SCOPE])
        except ValueError as exc:  # the authority's discovery failed (unknown tenant, bad authority)
            self._client = None
            raise TokenError(f"{what} failed: {str(exc).splitlines()[0][:200]}", transient=False) from None
        except Exception as exc:  # noqa: BLE001 - the network under msal
            self._client = None
            raise TokenError(f"{what} failed: {exc.__class__.__name__}", transient=True) from None
        if "access_token" not in result:
            error = result.get("error") or "no access_token"
            text = (result.get("error_description") or "").splitlines()[0][:200] if result.get("error_description") else ""
            transient = error in ("temporarily_unavailable", "server_error")
            raise TokenError(f"{what} failed: {error}{': ' + text if text else ''}", transient=transient)
        return result["access_token"], float(result.get("expires_in") or 3600)

    # ---- Google: google-auth ------------------------------------------------------------------
    def _google(self) -> tuple[str, float]:
        import google.auth.exceptions

        s = self.settings
        what = f"smtp: get an OAuth token from {s.describe}"
        try:
            if self._client is None:
                self._client = self._google_credentials()
            creds = self._client
            creds.refresh(_request_with_timeout())
        except google.auth.exceptions.RefreshError as exc:
            # google-auth puts the token endpoint's error and description in args[0]
            text = str(exc.args[0] if exc.args else exc).splitlines()[0][:200]
            raise TokenError(f"{what} failed: {text}", transient=bool(getattr(exc, "retryable", False))) from None
        except google.auth.exceptions.TransportError as exc:
            raise TokenError(f"{what} failed: cannot reach the token endpoint ({exc.__class__.__name__})",
                             transient=True) from None
        except (OSError, ValueError, KeyError) as exc:  # the key file: missing, not JSON, not a service account
            self._client = None
            raise TokenError(f"{what} failed: the service account key cannot be read ({exc.__class__.__name__})",
                             transient=False) from None
        expiry = creds.expiry  # naive UTC
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        lifetime = (expiry - now).total_seconds() if expiry else 3600.0
        return creds.token, lifetime

    def _google_credentials(self):
        s = self.settings
        token_url = s.token_url or GOOGLE_TOKEN_URL
        if s.service_account_file:
            import json

            from google.oauth2 import service_account

            with open(s.service_account_file, encoding="utf-8") as f:
                info = json.load(f)
            if s.token_url:
                info = {**info, "token_uri": token_url}
            return service_account.Credentials.from_service_account_info(
                info, scopes=[GOOGLE_SCOPE], subject=s.user)
        from google.oauth2.credentials import Credentials

        return Credentials(token=None, refresh_token=s.refresh_token, token_uri=token_url, client_id=s.client_id,
                           client_secret=s.client_secret, scopes=[GOOGLE_SCOPE])


def _request_with_timeout():
    """google-auth's requests transport with arflow's timeout (its default is 120 s)."""
    import functools

    from google.auth.transport.requests import Request

    request = Request()
    return functools.partial(request, timeout=TIMEOUT)


_SOURCES: dict[OAuthSettings, TokenSource] = {}
_SOURCES_LOCK = threading.Lock()


def token_source(settings: OAuthSettings) -> TokenSource:
    """One TokenSource per mailbox and app in the process, so a token outlives one SMTP connection
    (a run's mailer, the failure hook's, the next batch's)."""
    with _SOURCES_LOCK:
        if settings not in _SOURCES:
            _SOURCES[settings] = TokenSource(settings)
        return _SOURCES[settings]
