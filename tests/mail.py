"""A local SMTP server's handler that keeps what it accepts, and a free port to run it on (aiosmtpd's
Controller serves it: the real smtplib talks to it)."""

from __future__ import annotations

import socket
from email import message_from_bytes
from email import policy as email_policy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MailSink:
    """An SMTP server that keeps what it accepts; addresses in `refuse` are refused (550)."""

    def __init__(self):
        self.messages = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=email_policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def to(self, address: str):
        return [msg for rcpt, msg in self.messages if address in rcpt]

    def received(self) -> list:
        """Every message accepted, in order."""
        return [msg for _rcpt, msg in self.messages]
