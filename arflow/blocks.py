"""Prefect blocks for arflow's outgoing channels. Where a block is saved under the configured name
it wins over the environment (DESIGN.md, Configuration); secrets stay SecretStr and never reach
logs, artifacts or messages.

    from arflow.blocks import SmtpServer
    SmtpServer(host="smtp.example.com", port=587, username="ar", password="...", starttls=True,
               mail_from="ar@example.com").save("arflow-smtp")

Slack uses Prefect's own `SlackWebhook` block (`prefect.blocks.notifications`), saved as
"arflow-slack".
"""

from __future__ import annotations

import os

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class SmtpServer(Block):
    _block_type_name = "arflow SMTP server"
    _block_type_slug = "arflow-smtp-server"
    _description = "The SMTP server arflow sends customer e-mail through."

    host: str
    port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    mail_from: str = Field(default="accounts-receivable@localhost", description="the system's own address")


def _load(block_cls, name: str):
    try:
        return block_cls.load(name)
    except ValueError:  # no block saved under that name
        return None
    except Exception:  # noqa: BLE001 - no reachable Prefect API: the environment is the fallback
        return None


def smtp_from_block():
    """An SmtpConfig from the block named by ARFLOW_SMTP_BLOCK (default "arflow-smtp"), or None."""
    from connectors.messaging import SmtpConfig

    b = _load(SmtpServer, os.environ.get("ARFLOW_SMTP_BLOCK", "arflow-smtp"))
    if b is None:
        return None
    return SmtpConfig(host=b.host, port=b.port, user=b.username,
                      password=b.password.get_secret_value() if b.password else None, starttls=b.starttls,
                      mail_from=b.mail_from)


def slack_url_from_block() -> str | None:
    from prefect.blocks.notifications import SlackWebhook

    b = _load(SlackWebhook, os.environ.get("ARFLOW_SLACK_BLOCK", "arflow-slack"))
    return b.url.get_secret_value() if b is not None else None


def smtp_config():
    """The outgoing mail server: the saved block, else the environment (ARFLOW_SMTP_*), else None."""
    from connectors.messaging import SmtpConfig

    return smtp_from_block() or SmtpConfig.from_env()


def slack_webhook_url() -> str | None:
    """The Slack webhook: the saved block, else ARFLOW_SLACK_WEBHOOK_URL, else None."""
    return slack_url_from_block() or os.environ.get("ARFLOW_SLACK_WEBHOOK_URL") or None
