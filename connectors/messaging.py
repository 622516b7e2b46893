"""Messaging: e-mail over SMTP (smtplib), Slack through an incoming webhook (slack_sdk), and owner
tasks (the CRM's task object in production; the ledger's `owner_tasks` table here).

Configured by a Prefect block (arflow/blocks.py) or the environment (DESIGN.md, Configuration). A send either returns normally (the
server accepted it) or raises :class:`SendError` saying whether a later attempt may succeed
(`transient`). Passwords, OAuth tokens and webhook URLs never appear in an error message.

SMTP signs in with a password (`auth="password"`, AUTH LOGIN/PLAIN through smtplib's login) or with
an OAuth 2.0 access token (`auth="xoauth2"`: Microsoft 365 or Google Workspace, the token from
connectors/mail_oauth.py; docs/connectors/email-oauth.md).
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate


class SendError(RuntimeError):
    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class ChannelNotConfigured(RuntimeError):
    """Send mode needs a channel that has no configuration."""


def message_id(message_key: str, domain: str = "arflow") -> str:
    """The same message key always gets the same Message-ID, so a receiving system can tell a
    resend (after a delivery in doubt) from a new message."""
    return f"<{hashlib.sha256(message_key.encode()).hexdigest()[:32]}@{domain}>"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    mail_from: str = "accounts-receivable@localhost"
    timeout: float = 30.0
    auth: str = "password"                  # password | xoauth2
    oauth: "OAuthSettings | None" = None   # connectors.mail_oauth, where auth is xoauth2
    source: str = "environment"             # where it came from: environment, or block NAME

    def __post_init__(self):
        if self.auth not in ("password", "xoauth2"):
            raise ChannelNotConfigured(f"ARFLOW_SMTP_AUTH must be password or xoauth2, got {self.auth!r}")
        if self.auth == "xoauth2":
            if self.oauth is None:
                raise ChannelNotConfigured(f"SMTP XOAUTH2 (from the {self.source}) needs a provider, microsoft or google: "
                                           "ARFLOW_SMTP_OAUTH_PROVIDER (a block's oauth_provider)")
            missing = self.oauth.problems()
            if missing:
                raise ChannelNotConfigured(f"SMTP XOAUTH2 ({self.oauth.provider}, from the {self.source}) needs: "
                                           + "; ".join(missing))

    @classmethod
    def from_env(cls) -> "SmtpConfig | None":
        host = os.environ.get("ARFLOW_SMTP_HOST")
        if not host:
            return None
        port_text = os.environ.get("ARFLOW_SMTP_PORT", "25")
        if not port_text.isdigit():
            raise ChannelNotConfigured(f"ARFLOW_SMTP_PORT must be a port number, got {port_text!r}")
        user = os.environ.get("ARFLOW_SMTP_USER") or None
        auth = os.environ.get("ARFLOW_SMTP_AUTH", "password").strip().lower() or "password"
        oauth = None
        if auth == "xoauth2" and os.environ.get("ARFLOW_SMTP_OAUTH_PROVIDER"):
            oauth = oauth_settings(
                provider=os.environ.get("ARFLOW_SMTP_OAUTH_PROVIDER"), user=user,
                tenant=os.environ.get("ARFLOW_SMTP_OAUTH_TENANT"),
                client_id=os.environ.get("ARFLOW_SMTP_OAUTH_CLIENT_ID"),
                client_secret=os.environ.get("ARFLOW_SMTP_OAUTH_CLIENT_SECRET"),
                authority=os.environ.get("ARFLOW_SMTP_OAUTH_AUTHORITY"),
                token_url=os.environ.get("ARFLOW_SMTP_OAUTH_TOKEN_URL"),
                service_account_file=os.environ.get("ARFLOW_SMTP_OAUTH_SERVICE_ACCOUNT_FILE"),
                refresh_token=os.environ.get("ARFLOW_SMTP_OAUTH_REFRESH_TOKEN"))
        return cls(host=host, port=int(port_text), user=user,
                   password=os.environ.get("ARFLOW_SMTP_PASSWORD") or None,
                   starttls=os.environ.get("ARFLOW_SMTP_STARTTLS", "false").strip().lower() in ("1", "true", "yes"),
                   mail_from=os.environ.get("ARFLOW_MAIL_FROM", "accounts-receivable@localhost"),
                   auth=auth, oauth=oauth)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def oauth_settings(*, provider, user, **values):
    """connectors.mail_oauth.OAuthSettings from text settings (empty means not set)."""
    from connectors.mail_oauth import OAuthSettings

    return OAuthSettings(provider=(provider or "").strip().lower(), user=user or "",
                         **{k: (v or None) for k, v in values.items()})


def compose(*, sender: str, to: list[str], cc: list[str], subject: str, body: str, key: str,
            sender_on_behalf: str | None = None, reply_to: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    if sender_on_behalf and sender_on_behalf != sender:
        msg["Sender"] = sender_on_behalf  # the system that sent it on the owner's behalf
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    if reply_to:
        msg["Reply-To"] = reply_to  # the AR mailbox reply triage reads
        # One click in the mail client asks to stop: an "unsubscribe" reply, which triage records as an opt-out.
        msg["List-Unsubscribe"] = f"<mailto:{reply_to}?subject=unsubscribe>"
    msg["Subject"] = " ".join(subject.split())
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id(key)
    msg["X-Arflow-Message-Key"] = key
    msg.set_content(body)
    return msg


class SmtpMailer:
    """One connection for a batch of messages (`with SmtpMailer(cfg) as m: m.send(...)`)."""

    def __init__(self, config: SmtpConfig, tokens=None):
        self.config = config
        self._smtp: smtplib.SMTP | None = None
        self._tokens = tokens  # connectors.mail_oauth.TokenSource (default: the process's one for this mailbox)
        self._refused: SendError | None = None  # a sign-in refused for good: the batch's other sends fail at once

    def __enter__(self) -> "SmtpMailer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> smtplib.SMTP:
        c = self.config
        if c.port == 465:
            return smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=ssl.create_default_context())
        smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        if c.starttls:
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def _connect(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        if self._refused is not None:
            raise SendError(str(self._refused), transient=False)
        c = self.config
        if c.auth == "xoauth2":
            try:
                self._smtp = self._connect_xoauth2()
            except SendError as exc:
                if not exc.transient:
                    self._refused = exc
                raise
            return self._smtp
        try:
            smtp = self._open()
            if c.user:
                smtp.login(c.user, c.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            self._refused = SendError(f"SMTP {c.host}:{c.port}: login refused ({exc.smtp_code})", transient=False)
            raise SendError(str(self._refused), transient=False) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"SMTP {c.host}:{c.port}: cannot connect ({exc.__class__.__name__})", transient=True) from None
        self._smtp = smtp
        return smtp

    def _connect_xoauth2(self) -> smtplib.SMTP:
        """Connect and AUTH XOAUTH2 with the cached token; a 535 (the token expired early or was
        revoked) gets one new token and one more try on a new connection, then a SendError that
        names the step and the server's code, never the token."""
        from connectors.mail_oauth import TokenError

        c = self.config
        what = f"smtp: authenticate with XOAUTH2 ({c.oauth.describe}) as {c.oauth.user} at {c.where}"
        for attempt in (1, 2):
            try:
                token = self.tokens.token(force=attempt == 2)
            except TokenError as exc:
                raise SendError(str(exc), transient=exc.transient) from None
            try:
                smtp = self._open()
            except (OSError, smtplib.SMTPException) as exc:
                raise SendError(f"SMTP {c.where}: cannot connect ({exc.__class__.__name__})", transient=True) from None
            try:
                _auth_xoauth2(smtp, c.oauth.user, token)
                return smtp
            except smtplib.SMTPAuthenticationError as exc:
                _quit(smtp)
                reply = _reply_text(exc.smtp_error)
                if exc.smtp_code == 535 and attempt == 1:
                    continue
                after = " after a new token" if attempt == 2 else ""
                # 454 4.7.0 and the like: the server could not check the token now; a later try may pass
                raise SendError(f"{what} refused{after}: {exc.smtp_code} {reply}",
                                transient=400 <= exc.smtp_code < 500) from None
            except smtplib.SMTPNotSupportedError:
                _quit(smtp)
                raise SendError(f"{what}: the server does not offer AUTH XOAUTH2 (STARTTLS first? "
                                "ARFLOW_SMTP_STARTTLS=true on port 587)", transient=False) from None
            except (OSError, smtplib.SMTPException) as exc:
                _quit(smtp)
                raise SendError(f"{what} failed: connection lost ({exc.__class__.__name__})", transient=True) from None
        raise AssertionError("unreachable")

    @property
    def tokens(self):
        if self._tokens is None:
            from connectors.mail_oauth import token_source

            self._tokens = token_source(self.config.oauth)
        return self._tokens

    def check(self) -> dict:
        """What `arflow check-connection smtp` prints: connect, sign in, NOOP, QUIT; nothing is sent."""
        c = self.config
        smtp = self._connect()
        try:
            code, reply = smtp.noop()
        except (OSError, smtplib.SMTPException) as exc:
            self._smtp = None
            _quit(smtp)
            raise SendError(f"smtp: NOOP at {c.where} failed: {exc.__class__.__name__}", transient=True) from None
        features = sorted(smtp.esmtp_features)
        self.close()
        xoauth2 = c.auth == "xoauth2"
        out = {"system": "smtp", "server": c.where, "config": c.source,
               "tls": "implicit" if c.port == 465 else ("starttls" if c.starttls else "none"),
               "auth": "xoauth2" if xoauth2 else ("password" if c.user else "none"),
               "user": (c.oauth.user if xoauth2 else c.user) or "", "signed_in": bool(xoauth2 or c.user)}
        if xoauth2:
            out.update({"oauth_provider": c.oauth.describe, "tokens_fetched": self.tokens.fetches,
                        "token_expires_in_s": int(self.tokens.expires_in)})
        out.update({"noop": f"{code} {_reply_text(reply)}", "extensions": features, "messages_sent": 0})
        return out

    def send(self, msg: EmailMessage) -> None:
        c = self.config
        try:
            refused = self._connect().send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise SendError(f"SMTP refused every recipient ({codes})", transient=all(400 <= x < 500 for x in codes)) from None
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise SendError(f"SMTP {c.host}: {exc.smtp_code} {exc.smtp_error.decode(errors='replace')[:120]}",
                            transient=400 <= exc.smtp_code < 500) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise SendError(f"SMTP {c.host}: connection lost ({exc.__class__.__name__})", transient=True) from None
        if refused:
            # Some recipients took it: the message is delivered; the refused ones are reported.
            return None

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._smtp = None


def _reply_text(reply) -> str:
    from arflow.safety import redact

    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return redact(" ".join(text.split()))[:160]


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except Exception:  # noqa: BLE001 - closing a refused connection
        try:
            smtp.close()
        except Exception:  # noqa: BLE001
            pass


def _auth_xoauth2(smtp: smtplib.SMTP, user: str, token: str) -> None:
    """AUTH XOAUTH2 with the initial response. A server that refuses answers 334 with a base64
    JSON error (Google: {"status":"401",...}); the client then sends an empty line and the server
    ends with 535. smtplib's auth() drives that exchange: the callable gives the XOAUTH2 string
    first, and "" for the error challenge."""
    from connectors.mail_oauth import xoauth2_string

    smtp.ehlo_or_helo_if_needed()
    if smtp.has_extn("auth"):
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        if "XOAUTH2" not in offered:
            raise smtplib.SMTPNotSupportedError("XOAUTH2 not offered")
    elif smtp.does_esmtp:
        raise smtplib.SMTPNotSupportedError("no AUTH offered")

    def respond(challenge: bytes | None = None) -> str:
        return xoauth2_string(user, token) if challenge is None else ""

    smtp.auth("XOAUTH2", respond, initial_response_ok=True)


class SlackWebhook:
    def __init__(self, url: str, timeout: int = 15):
        from slack_sdk.webhook import WebhookClient

        self._client = WebhookClient(url, timeout=timeout)

    def send(self, text: str) -> None:
        try:
            resp = self._client.send(text=text)
        except Exception as exc:  # noqa: BLE001 - network errors of the HTTP client
            raise SendError(f"Slack webhook: {exc.__class__.__name__}", transient=True) from None
        if resp.status_code != 200:
            raise SendError(f"Slack webhook: HTTP {resp.status_code} {str(resp.body)[:80]}",
                            transient=resp.status_code == 429 or resp.status_code >= 500)


def split_recipients(recipients: str) -> tuple[list[str], list[str]]:
    """(to, cc): the first address is the addressee; the rest are copied. Role names that did not
    resolve to an address are dropped."""
    addrs = [r.strip() for r in (recipients or "").split(",") if "@" in r]
    return addrs[:1], addrs[1:]


def envelope(recipients: str, sender_address: str | None, mail_from: str, reply_to: str | None = None,
             company: str | None = None) -> dict:
    """Who a message is from and to, exactly as it leaves: what the approver is shown and what the
    send composes, from one function so the two cannot differ. `company` (policy company.name):
    the name From shows, on the owner's address or the system's own."""
    to, cc = split_recipients(recipients)
    if company:
        sender = display_sender(sender_address, display_sender(bare_address(mail_from), mail_from, company), company)
        return {"from": sender, "sender": mail_from if bare_address(sender) != bare_address(mail_from) else None,
                "to": to, "cc": cc, "reply_to": reply_to or None}
    sender = display_sender(sender_address, mail_from)
    return {"from": sender, "sender": mail_from if sender != mail_from else None, "to": to, "cc": cc,
            "reply_to": reply_to or None}


def bare_address(value: str) -> str | None:
    """The address of "Name <addr>" or "addr" (None where there is none)."""
    from email.utils import parseaddr

    addr = parseaddr(value or "")[1]
    return addr or None


def display_sender(address: str | None, default: str, name: str = "Accounts Receivable") -> str:
    if not address:
        return default
    try:
        return formataddr((name, str(Address(addr_spec=address))))
    except (ValueError, IndexError):
        return default
