"""Passwordless mail at the wire: a local OAuth 2.0 token endpoint (HTTPS, the tests trust its
self-signed certificate through REQUESTS_CA_BUNDLE) answering as Microsoft's identity platform and
Google's token endpoint document it, and a local SMTP server (aiosmtpd) that speaks AUTH XOAUTH2
and accepts only a live token the endpoint issued, for the right mailbox.

Microsoft (https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow):
    GET  /{tenant}/v2.0/.well-known/openid-configuration  -> issuer, authorization_endpoint, token_endpoint
    POST /{tenant}/oauth2/v2.0/token  grant_type=client_credentials, client_id, client_secret, scope
         200 {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": ...}
         401 {"error": "invalid_client", "error_description": "AADSTS7000215: ...", "error_codes": [...]}
Google (https://developers.google.com/identity/protocols/oauth2/service-account#httprest,
https://developers.google.com/identity/protocols/oauth2/web-server#offline):
    POST /token  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer, assertion (an RS256 JWT: iss,
         sub, scope, aud, iat, exp)  |  grant_type=refresh_token, refresh_token, client_id, client_secret
         200 {"access_token": ..., "expires_in": 3599, "token_type": "Bearer", "scope": ...}
         400 {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
SMTP (https://developers.google.com/workspace/gmail/imap/xoauth2-protocol): AUTH XOAUTH2 <base64 of
"user=U\\x01auth=Bearer T\\x01\\x01">: 235 for a live token of U; otherwise Google's way, a 334 with
a base64 JSON error, the client's empty line, then 535 5.7.8; or Microsoft's, 535 5.7.3 at once.
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import secrets
import time
import urllib.parse
import warnings
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from tests.fake_salesforce import self_signed
from tests.wire import WireServer

MS_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class FakeTokenEndpoint(WireServer):
    """Issues access tokens; `hits` counts token requests, `live` holds the tokens still good."""

    def __init__(self, folder: Path, *, tenant: str = "contoso.onmicrosoft.com", client_id: str = "app-client-id",
                 client_secret: str = "app-secret-value", refresh_token: str = "1//google-refresh-token",
                 expires_in: int = 3599):
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.refresh_token, self.expires_in = refresh_token, expires_in
        self.hits = 0
        self.issued: list[tuple[str, str]] = []  # (token, the mailbox or app it is for)
        self.live: dict[str, str | None] = {}     # token -> the user it is good for (None: any, the app's)
        self.revoked_grants = False
        self.refresh_user: str | None = None  # the mailbox whose owner granted the refresh token
        self.ids = itertools.count(1)
        self.folder = folder
        self.cert, key = self_signed(folder)
        self.service_account: dict | None = None
        self._public_key = None
        super().__init__(tls=(self.cert, key))

    # ---- set-up -------------------------------------------------------------------------------
    def service_account_file(self, name: str = "sa.json") -> Path:
        """A service account key (RSA, as the Google Cloud console downloads it) whose public half
        this endpoint verifies assertions with."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_key = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        self.service_account = {
            "type": "service_account", "project_id": "arflow-mail", "private_key_id": secrets.token_hex(20),
            "private_key": pem, "client_email": "arflow-mailer@arflow-mail.iam.gserviceaccount.com",
            "client_id": "103948572639485726394", "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com"}
        path = self.folder / name
        path.write_text(json.dumps(self.service_account))
        return path

    @property
    def authority(self) -> str:
        return f"{self.url}/{self.tenant}"

    @property
    def google_token_url(self) -> str:
        return f"{self.url}/token"

    def revoke_all(self) -> None:
        """Every issued token stops working at the mail server (an admin revoked the app's consent)."""
        self.live.clear()

    # ---- answers ------------------------------------------------------------------------------
    def _issue(self, user: str | None, prefix: str) -> dict:
        n = next(self.ids)
        # real tokens are long (a Microsoft JWT is 1,500+ characters): long enough to test line limits
        token = f"{prefix}{n}." + base64.urlsafe_b64encode(secrets.token_bytes(900)).decode().rstrip("=")
        self.issued.append((token, user or "app"))
        self.live[token] = user
        return {"token_type": "Bearer", "expires_in": self.expires_in, "access_token": token}

    def answer(self, method, path, query, body, headers):
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
        base = f"/{self.tenant}"
        if method == "GET" and path == f"{base}/v2.0/.well-known/openid-configuration":
            return 200, {"issuer": f"{self.url}/{self.tenant}/v2.0",
                         "authorization_endpoint": f"{self.url}{base}/oauth2/v2.0/authorize",
                         "token_endpoint": f"{self.url}{base}/oauth2/v2.0/token",
                         "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                                   "client_secret_basic"],
                         "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                         "jwks_uri": f"{self.url}{base}/discovery/v2.0/keys"}, {}
        if method == "POST" and path == f"{base}/oauth2/v2.0/token":
            self.hits += 1
            return self._microsoft(form, headers)
        if method == "POST" and path == "/token":
            self.hits += 1
            return self._google(form)
        return 404, {"error": "not_found"}, {}

    def _microsoft(self, form, headers):
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            client_id, secret = (urllib.parse.unquote(x) for x in base64.b64decode(auth[6:]).decode().split(":", 1))
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003: grant type"}, {}
        if client_id != self.client_id or secret != self.client_secret:
            return 401, {"error": "invalid_client", "error_codes": [7000215],
                         "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret "
                                              "being sent in the request is the client secret value, not the "
                                              "client secret ID.", "timestamp": "2026-12-04 10:00:00Z",
                         "trace_id": "7f1c", "correlation_id": "c0a1"}, {}
        if form.get("scope", "").split() != [MS_SCOPE]:
            return 400, {"error": "invalid_scope", "error_description": f"AADSTS1002012: scope {form.get('scope')}"}, {}
        return 200, {**self._issue(None, "eyJ0eXAiOiJKV1QiLCJtcyI6"), "ext_expires_in": self.expires_in}, {}

    def _google(self, form):
        if form.get("grant_type") == JWT_BEARER:
            import jwt

            if self._public_key is None:
                return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, {}
            try:
                # the documented audience is Google's token endpoint, wherever the assertion is posted
                claims = jwt.decode(form.get("assertion", ""), self._public_key, algorithms=["RS256"],
                                    audience="https://oauth2.googleapis.com/token")
            except jwt.PyJWTError as exc:
                return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {exc.__class__.__name__}"}, {}
            if claims.get("iss") != self.service_account["client_email"] or claims.get("scope") != GOOGLE_SCOPE:
                return 400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience provided."}, {}
            if not claims.get("sub"):
                return 400, {"error": "invalid_grant", "error_description": "Not a valid email."}, {}
            if self.revoked_grants:
                return 401, {"error": "unauthorized_client", "error_description":
                             "Client is unauthorized to retrieve access tokens using this method, or client not "
                             "authorized for any of the scopes requested."}, {}
            return 200, {**self._issue(claims["sub"], "ya29.c.sa"), "scope": GOOGLE_SCOPE}, {}
        if form.get("grant_type") == "refresh_token":
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
                return 401, {"error": "invalid_client", "error_description": "Unauthorized"}, {}
            if form.get("refresh_token") != self.refresh_token or self.revoked_grants:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, {}
            return 200, {**self._issue(self.refresh_user, "ya29.a0"), "scope": GOOGLE_SCOPE}, {}
        return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, {}


class _LongLines(SMTP):
    """Real servers take a long AUTH line (RFC 4954: up to 12,288 octets); aiosmtpd's default is 512."""

    line_length_limit = 16384

    def __init__(self, *args, **kwargs):
        with warnings.catch_warnings():  # AUTH without TLS: a local test server
            warnings.simplefilter("ignore")
            super().__init__(*args, **kwargs)
        # an instance's own limits (SMTP's class-level dict is shared by every server in the process)
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit, {"AUTH": 12288})


class _Controller(Controller):
    def factory(self):
        return _LongLines(self.handler, **self.SMTP_kwargs)


class XOAuth2Mailbox:
    """aiosmtpd handler: AUTH XOAUTH2 against the endpoint's live tokens, then keeps what it accepts.
    `style` is how a refusal looks: "google" (334 + JSON error, then 535) or "microsoft" (535)."""

    def __init__(self, tokens: FakeTokenEndpoint, user: str, style: str = "microsoft"):
        self.tokens, self.user, self.style = tokens, user, style
        self.auths: list[dict] = []   # user, token, ok per AUTH
        self.messages = []
        self.noops = 0
        self.unavailable: str | None = None  # a reply to every AUTH, e.g. "454 4.7.0 Temporary authentication failure"

    async def auth_XOAUTH2(self, server, args):
        if len(args) > 1:
            raw = base64.b64decode(args[1])
        else:
            raw = await server.challenge_auth("")
            if not isinstance(raw, bytes):
                return AuthResult(success=False, handled=True)
        parts = raw.decode(errors="replace").split("\x01")
        fields = dict(p.split("=", 1) for p in parts if "=" in p)
        user, bearer = fields.get("user"), fields.get("auth", "")
        token = bearer[len("Bearer "):] if bearer.startswith("Bearer ") else None
        good = token in self.tokens.live and user == self.user and self.tokens.live[token] in (None, user)
        self.auths.append({"user": user, "token": token, "ok": good, "well_formed": raw.endswith(b"\x01\x01")})
        if self.unavailable:
            self.auths[-1]["ok"] = False
            return AuthResult(success=False, handled=False, message=self.unavailable)
        if good and raw.endswith(b"\x01\x01"):
            return AuthResult(success=True, auth_data=user)
        if self.style == "google":
            error = json.dumps({"status": "400", "schemes": "Bearer", "scope": GOOGLE_SCOPE}).encode()
            answer = await server.challenge_auth(error)
            self.auths[-1]["after_challenge"] = answer
            return AuthResult(success=False, handled=False,
                              message="535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
                                      "535 5.7.8  https://support.google.com/mail/?p=BadCredentials")
        return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")

    async def handle_NOOP(self, server, session, envelope, arg):
        self.noops += 1
        return "250 2.0.0 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=email_policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg, session.auth_data))
        return "250 2.0.0 OK queued"

    def to(self, address: str):
        return [msg for rcpt, msg, _ in self.messages if address in rcpt]


class OAuthMail:
    """The token endpoint and the SMTP server together; `env(provider)` is what arflow needs."""

    def __init__(self, folder: Path, *, user: str = "ar@yourco.example", style: str = "microsoft",
                 expires_in: int = 3599):
        from tests.mail import free_port

        self.user = user
        self.tokens = FakeTokenEndpoint(folder, expires_in=expires_in)
        self.tokens.refresh_user = user
        self.mailbox = XOAuth2Mailbox(self.tokens, user, style)
        self.port = free_port()
        # auth_required: MAIL FROM before AUTH is refused (530), as Microsoft 365 and Gmail do
        self.smtp = _Controller(self.mailbox, hostname="127.0.0.1", port=self.port, auth_require_tls=False,
                                auth_required=True)

    def __enter__(self) -> "OAuthMail":
        self.tokens.__enter__()
        self.smtp.start()
        return self

    def __exit__(self, *exc) -> None:
        self.smtp.stop()
        self.tokens.__exit__(*exc)

    def env(self, provider: str = "microsoft", *, google_mode: str = "service_account") -> dict:
        t = self.tokens
        env = {"ARFLOW_SMTP_HOST": "127.0.0.1", "ARFLOW_SMTP_PORT": str(self.port), "ARFLOW_SMTP_USER": self.user,
               "ARFLOW_SMTP_AUTH": "xoauth2", "ARFLOW_SMTP_OAUTH_PROVIDER": provider, "ARFLOW_SMTP_BLOCK": "none",
               "ARFLOW_MAIL_FROM": self.user, "REQUESTS_CA_BUNDLE": str(t.cert)}
        if provider == "microsoft":
            env |= {"ARFLOW_SMTP_OAUTH_TENANT": t.tenant, "ARFLOW_SMTP_OAUTH_CLIENT_ID": t.client_id,
                    "ARFLOW_SMTP_OAUTH_CLIENT_SECRET": t.client_secret, "ARFLOW_SMTP_OAUTH_AUTHORITY": t.authority}
        elif google_mode == "service_account":
            env |= {"ARFLOW_SMTP_OAUTH_SERVICE_ACCOUNT_FILE": str(t.service_account_file()),
                    "ARFLOW_SMTP_OAUTH_TOKEN_URL": t.google_token_url}
        else:
            env |= {"ARFLOW_SMTP_OAUTH_CLIENT_ID": t.client_id, "ARFLOW_SMTP_OAUTH_CLIENT_SECRET": t.client_secret,
                    "ARFLOW_SMTP_OAUTH_REFRESH_TOKEN": t.refresh_token,
                    "ARFLOW_SMTP_OAUTH_TOKEN_URL": t.google_token_url}
        return env

    def secrets(self) -> list[str]:
        """Every secret arflow was given or got: none may appear in an error or a log."""
        t = self.tokens
        return [t.client_secret, t.refresh_token, *(tok for tok, _ in t.issued),
                *(tok[:40] for tok, _ in t.issued)]


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
