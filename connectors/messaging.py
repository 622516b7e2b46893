"""Messaging: e-mail over SMTP (smtplib), Slack through an incoming webhook (slack_sdk), and owner
tasks (the CRM's task object in production; the ledger's `owner_tasks` table here).

Configured by a Prefect block (arflow/blocks.py) or the environment (DESIGN.md, Configuration). A send either returns normally (the
server accepted it) or raises :class:`SendError` saying whether a later attempt may succeed
(`transient`). Passwords and webhook URLs never appear in an error message.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import ssl
from dataclasses import dataclass
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
    password: str | None = None
    starttls: bool = False
    mail_from: str = "accounts-receivable@localhost"
    timeout: float = 30.0

    @classmethod
    def from_env(cls) -> "SmtpConfig | None":
        host = os.environ.get("ARFLOW_SMTP_HOST")
        if not host:
            return None
        port_text = os.environ.get("ARFLOW_SMTP_PORT", "25")
        if not port_text.isdigit():
            raise ChannelNotConfigured(f"ARFLOW_SMTP_PORT must be a port number, got {port_text!r}")
        return cls(host=host, port=int(port_text), user=os.environ.get("ARFLOW_SMTP_USER") or None,
                   password=os.environ.get("ARFLOW_SMTP_PASSWORD") or None,
                   starttls=os.environ.get("ARFLOW_SMTP_STARTTLS", "false").strip().lower() in ("1", "true", "yes"),
                   mail_from=os.environ.get("ARFLOW_MAIL_FROM", "accounts-receivable@localhost"))


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

    def __init__(self, config: SmtpConfig):
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> "SmtpMailer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connect(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        c = self.config
        try:
            if c.port == 465:
                smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
                if c.starttls:
                    smtp.starttls(context=ssl.create_default_context())
            if c.user:
                smtp.login(c.user, c.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise SendError(f"SMTP {c.host}:{c.port}: login refused ({exc.smtp_code})", transient=False) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"SMTP {c.host}:{c.port}: cannot connect ({exc.__class__.__name__})", transient=True) from None
        self._smtp = smtp
        return smtp

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
