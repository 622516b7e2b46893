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
    # OAuth 2.0 instead of a password (docs/connectors/email-oauth.md); username is the mailbox
    auth: str = Field(default="password", description="password, or xoauth2 (Microsoft 365, Google Workspace)")
    oauth_provider: str | None = Field(default=None, description="microsoft or google")
    oauth_tenant: str | None = Field(default=None, description="Microsoft: the directory (tenant) id or domain")
    oauth_client_id: str | None = Field(default=None, description="the app's client id")
    oauth_client_secret: SecretStr | None = Field(default=None, description="the app's client secret")
    oauth_authority: str | None = Field(default=None, description="Microsoft: replaces https://login.microsoftonline.com/{tenant}")
    oauth_token_url: str | None = Field(default=None, description="Google: replaces https://oauth2.googleapis.com/token")
    oauth_service_account_file: str | None = Field(default=None, description="Google: the service account's JSON key file")
    oauth_refresh_token: SecretStr | None = Field(default=None, description="Google: a user's refresh token")


def _load(block_cls, name: str):
    try:
        return block_cls.load(name)
    except ValueError:  # no block saved under that name
        return None
    except Exception:  # noqa: BLE001 - no reachable Prefect API: the environment is the fallback
        return None


def smtp_from_block():
    """An SmtpConfig from the block named by ARFLOW_SMTP_BLOCK (default "arflow-smtp"), or None."""
    from connectors.messaging import SmtpConfig, oauth_settings

    name = os.environ.get("ARFLOW_SMTP_BLOCK", "arflow-smtp")
    b = _load(SmtpServer, name)
    if b is None:
        return None
    auth = (b.auth or "password").strip().lower()
    oauth = None
    if auth == "xoauth2" and b.oauth_provider:
        oauth = oauth_settings(provider=b.oauth_provider, user=b.username, tenant=b.oauth_tenant,
                               client_id=b.oauth_client_id, client_secret=_plain(b.oauth_client_secret),
                               authority=b.oauth_authority, token_url=b.oauth_token_url,
                               service_account_file=b.oauth_service_account_file,
                               refresh_token=_plain(b.oauth_refresh_token))
    return SmtpConfig(host=b.host, port=b.port, user=b.username,
                      password=b.password.get_secret_value() if b.password else None, starttls=b.starttls,
                      mail_from=b.mail_from, auth=auth, oauth=oauth, source=f"block {name}")


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


# ---- connected systems (DESIGN.md, Configuration): a saved block wins, the environment is the fallback ----
class QuickBooksConnection(Block):
    _block_type_name = "arflow QuickBooks Online"
    _block_type_slug = "arflow-quickbooks-online"
    _description = "The QuickBooks Online app and company arflow reads invoices, customers and payments from."

    client_id: str
    client_secret: SecretStr
    refresh_token: SecretStr = Field(description="rotated by Intuit; arflow saves the new one back here")
    realm_id: str
    environment: str = Field(default="production", description="sandbox, production, or an OpenID discovery URL")
    base_url: str | None = Field(default=None, description="API base including /v3 (default: Intuit's)")


class XeroConnection(Block):
    _block_type_name = "arflow Xero"
    _block_type_slug = "arflow-xero"
    _description = "The Xero app and organisation arflow reads invoices, contacts and payments from."

    client_id: str
    client_secret: SecretStr
    refresh_token: SecretStr = Field(description="rotated by Xero on every refresh; arflow saves the new one back here")
    tenant_id: str | None = Field(default=None, description="the organisation, where the app is connected to several")
    base_url: str | None = Field(default=None, description="Accounting API base (default https://api.xero.com/api.xro/2.0)")
    identity_url: str | None = Field(default=None, description="base of GET /connections (default https://api.xero.com)")
    token_url: str | None = Field(default=None, description="token endpoint (default https://identity.xero.com/connect/token)")
    scopes: str | None = Field(default=None, description="the scopes the refresh asks for (default: the least arflow reads with)")


class SalesforceConnection(Block):
    _block_type_name = "arflow Salesforce"
    _block_type_slug = "arflow-salesforce"
    _description = "The Salesforce org arflow reads accounts and contacts from and writes Tasks to."

    instance_url: str | None = None
    session_id: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    domain: str = Field(default="login", description="login, or test for a sandbox")
    field_map: str | None = Field(default=None, description="path of the field map (salesforce_fields.yaml)")


class HubSpotConnection(Block):
    _block_type_name = "arflow HubSpot"
    _block_type_slug = "arflow-hubspot"
    _description = "The HubSpot account arflow reads companies and contacts from and writes tasks to."

    access_token: SecretStr | None = Field(default=None, description="a private app's access token")
    client_id: str | None = Field(default=None, description="an OAuth app's client id (instead of a token)")
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    base_url: str | None = Field(default=None, description="API base (default https://api.hubapi.com)")
    field_map: str | None = Field(default=None, description="path of the field map (hubspot_fields.yaml)")


class StripeConnection(Block):
    _block_type_name = "arflow Stripe"
    _block_type_slug = "arflow-stripe"
    _description = "The Stripe account arflow reads invoices from and charges autopay invoices through."

    api_key: SecretStr
    webhook_secret: SecretStr | None = None
    base_url: str | None = None


class ChargebeeConnection(Block):
    _block_type_name = "arflow Chargebee"
    _block_type_slug = "arflow-chargebee"
    _description = "The Chargebee site arflow reads invoices, customers and payments from and collects autopay invoices through."

    site: str = Field(description="the site name: acme for acme.chargebee.com (acme-test for its test site)")
    api_key: SecretStr = Field(description="a read-only key (transactional data) is enough to read")
    charge_api_key: SecretStr | None = Field(default=None, description="the key collect_payment uses (default: api_key)")
    webhook_username: str | None = Field(default=None, description="basic-auth user of Chargebee's webhook to arflow")
    webhook_password: SecretStr | None = None
    base_url: str | None = Field(default=None, description="replaces https://{site}.chargebee.com (a proxy, tests)")


def _plain(value):
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def connection(system: str) -> tuple[dict, object | None]:
    """The settings of a connected system (quickbooks, xero, salesforce, stripe, chargebee) as a dict, and the block
    they came from (None: the environment). ARFLOW_<SYSTEM>_BLOCK names the block (default
    arflow-<system>)."""
    cls = {"quickbooks": QuickBooksConnection, "xero": XeroConnection, "salesforce": SalesforceConnection,
           "stripe": StripeConnection, "hubspot": HubSpotConnection, "chargebee": ChargebeeConnection}[system]
    block = _load(cls, os.environ.get(f"ARFLOW_{system.upper()}_BLOCK", f"arflow-{system}"))
    env = os.environ.get
    if block is not None:
        return {name: _plain(getattr(block, name)) for name in type(block).model_fields}, block
    if system == "quickbooks":
        return {"client_id": env("ARFLOW_QBO_CLIENT_ID"), "client_secret": env("ARFLOW_QBO_CLIENT_SECRET"),
                "refresh_token": env("ARFLOW_QBO_REFRESH_TOKEN"), "realm_id": env("ARFLOW_QBO_REALM_ID"),
                "environment": env("ARFLOW_QBO_ENVIRONMENT") or "production",
                "base_url": env("ARFLOW_QBO_BASE_URL")}, None
    if system == "xero":
        return {"client_id": env("ARFLOW_XERO_CLIENT_ID"), "client_secret": env("ARFLOW_XERO_CLIENT_SECRET"),
                "refresh_token": env("ARFLOW_XERO_REFRESH_TOKEN"), "tenant_id": env("ARFLOW_XERO_TENANT_ID"),
                "base_url": env("ARFLOW_XERO_BASE_URL"), "identity_url": env("ARFLOW_XERO_IDENTITY_URL"),
                "token_url": env("ARFLOW_XERO_TOKEN_URL"), "scopes": env("ARFLOW_XERO_SCOPES")}, None
    if system == "salesforce":
        return {"instance_url": env("ARFLOW_SFDC_INSTANCE_URL"), "session_id": env("ARFLOW_SFDC_SESSION_ID"),
                "username": env("ARFLOW_SFDC_USERNAME"), "password": env("ARFLOW_SFDC_PASSWORD"),
                "security_token": env("ARFLOW_SFDC_SECURITY_TOKEN"), "domain": env("ARFLOW_SFDC_DOMAIN") or "login",
                "field_map": env("ARFLOW_SFDC_FIELD_MAP")}, None
    if system == "hubspot":
        return {"access_token": env("ARFLOW_HUBSPOT_TOKEN"), "client_id": env("ARFLOW_HUBSPOT_CLIENT_ID"),
                "client_secret": env("ARFLOW_HUBSPOT_CLIENT_SECRET"), "refresh_token": env("ARFLOW_HUBSPOT_REFRESH_TOKEN"),
                "base_url": env("ARFLOW_HUBSPOT_BASE_URL"), "field_map": env("ARFLOW_HUBSPOT_FIELD_MAP")}, None
    if system == "chargebee":
        return {"site": env("ARFLOW_CHARGEBEE_SITE"), "api_key": env("ARFLOW_CHARGEBEE_API_KEY"),
                "charge_api_key": env("ARFLOW_CHARGEBEE_CHARGE_API_KEY"),
                "webhook_username": env("ARFLOW_CHARGEBEE_WEBHOOK_USERNAME"),
                "webhook_password": env("ARFLOW_CHARGEBEE_WEBHOOK_PASSWORD"),
                "base_url": env("ARFLOW_CHARGEBEE_BASE_URL")}, None
    return {"api_key": env("ARFLOW_STRIPE_API_KEY"), "webhook_secret": env("ARFLOW_STRIPE_WEBHOOK_SECRET"),
            "base_url": env("ARFLOW_STRIPE_BASE_URL")}, None
