"""Every ARFLOW_* environment variable, declared once: its type, its default and what it does.

`ArflowSettings` (pydantic-settings) loads them from the environment and refuses a value of the wrong
type with the variable's name; `arflow config --show` prints what is in effect, secrets masked.
`tests/test_settings.py` checks that every ARFLOW_* name the code reads is declared here and
described in docs/configuration.md, so a new variable cannot go undocumented.

A connected system's credentials may also come from a Prefect block (`arflow/blocks.py`); where its
block is saved, the block wins over these variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from arflow.resources import ROOT, default_data_dir, default_path  # noqa: F401
from arflow.safety import redact

PREFIX = "ARFLOW_"
SECRET = SecretStr | None

# (name without the prefix, type, default, description). A SecretStr is masked wherever it is shown.
VARIABLES: tuple[tuple[str, Any, Any, str], ...] = (
    # where arflow runs
    ("DATA_DIR", Path, default_data_dir(), "the project's data folder (demo data, the SQLite ledger, runs, reports)"),
    ("DB_URL", str | None, None, "the ledger, a SQLAlchemy URL; default: sqlite:///<DATA_DIR>/arflow.db"),
    ("POLICY", Path, default_path("policy.yaml"), "the policy file"),
    ("TIMEZONE", str | None, None, "the company's timezone for 'today'; default: the policy's"),
    ("SQLITE_BUSY_TIMEOUT_MS", int, 30000, "how long a SQLite writer waits for another's lock"),
    ("REPORTS_URL", str, "", "where the reports folder is served, for the dashboard's link artifact"),
    ("SENDING_TIMEOUT_SECONDS", int, 600, "how long a message may stay 'sending' before it is a delivery in doubt"),
    ("DASK_ADDRESS", str | None, None, "the Dask scheduler a run with partitions > 1 runs on; none: a LocalCluster"),
    ("DASK_WORKERS", int, 2, "the LocalCluster's worker processes (partitions > 1 without ARFLOW_DASK_ADDRESS)"),
    # outgoing mail and chat
    ("SMTP_HOST", str | None, None, "the outgoing mail server (draft and send modes need it)"),
    ("SMTP_PORT", int, 25, "its port; 465 is implicit TLS"),
    ("SMTP_USER", str | None, None, "the SMTP login, where the server asks for one"),
    ("SMTP_PASSWORD", SECRET, None, "its password"),
    ("SMTP_STARTTLS", bool, False, "upgrade the connection with STARTTLS"),
    ("SMTP_AUTH", str, "password", "how SMTP signs in: password, or xoauth2 (an OAuth 2.0 token)"),
    ("SMTP_OAUTH_PROVIDER", str | None, None, "xoauth2: microsoft (Microsoft 365) or google (Google Workspace)"),
    ("SMTP_OAUTH_TENANT", str | None, None, "Microsoft: the directory (tenant) id or domain"),
    ("SMTP_OAUTH_CLIENT_ID", str | None, None, "the app registration's (or Google OAuth client's) client id"),
    ("SMTP_OAUTH_CLIENT_SECRET", SECRET, None, "its client secret"),
    ("SMTP_OAUTH_AUTHORITY", str | None, None, "Microsoft: replaces https://login.microsoftonline.com/<tenant>"),
    ("SMTP_OAUTH_TOKEN_URL", str | None, None, "Google: replaces https://oauth2.googleapis.com/token"),
    ("SMTP_OAUTH_SERVICE_ACCOUNT_FILE", Path | None, None, "Google: a service account key with domain-wide delegation"),
    ("SMTP_OAUTH_REFRESH_TOKEN", SECRET, None, "Google: a user's refresh token (instead of a service account)"),
    ("SMTP_BLOCK", str, "arflow-smtp", "the Prefect block that, where saved, wins over the SMTP variables"),
    ("MAIL_FROM", str, "accounts-receivable@localhost", "the system's address (From, or Sender beside an owner)"),
    ("SLACK_WEBHOOK_URL", SECRET, None, "Slack incoming webhook for owner alerts"),
    ("SLACK_BLOCK", str, "arflow-slack", "the Prefect SlackWebhook block that, where saved, wins"),
    # replies
    ("IMAP_HOST", str | None, None, "the mailbox replies arrive in (arflow replies --from imap)"),
    ("IMAP_PORT", int, 993, "its port"),
    ("IMAP_USER", str, "", "its login"),
    ("IMAP_PASSWORD", SECRET, None, "its password"),
    ("IMAP_FOLDER", str, "INBOX", "the folder read"),
    ("IMAP_SSL", bool, True, "IMAP over TLS"),
    # every connector's HTTP
    ("HTTP_RETRIES", int, 5, "retries of a 429 or 5xx answer, with backoff"),
    ("HTTP_BACKOFF", float, 1.0, "the first backoff in seconds (doubling, at most 60)"),
    ("HTTP_TIMEOUT", float, 60.0, "seconds a request may take"),
    # QuickBooks Online
    ("QBO_CLIENT_ID", str | None, None, "QuickBooks app's client id"),
    ("QBO_CLIENT_SECRET", SECRET, None, "QuickBooks app's client secret"),
    ("QBO_REFRESH_TOKEN", SECRET, None, "QuickBooks refresh token (rotated and saved back)"),
    ("QBO_REALM_ID", str | None, None, "the QuickBooks company"),
    ("QBO_ENVIRONMENT", str, "production", "sandbox, production or an OpenID discovery URL"),
    ("QBO_BASE_URL", str | None, None, "the API base with /v3 (a local server in tests)"),
    ("QBO_PAYMENT_DAYS", int, 35, "how far back QuickBooks payments are read"),
    ("QUICKBOOKS_BLOCK", str, "arflow-quickbooks", "the Prefect block that, where saved, wins"),
    # Xero
    ("XERO_CLIENT_ID", str | None, None, "Xero app's client id"),
    ("XERO_CLIENT_SECRET", SECRET, None, "Xero app's client secret"),
    ("XERO_REFRESH_TOKEN", SECRET, None, "Xero refresh token (rotated and saved back)"),
    ("XERO_TENANT_ID", str | None, None, "the organisation, where the app is connected to several"),
    ("XERO_BASE_URL", str | None, None, "the Accounting API base (a local server in tests)"),
    ("XERO_IDENTITY_URL", str | None, None, "the base of GET /connections"),
    ("XERO_TOKEN_URL", str | None, None, "the token endpoint"),
    ("XERO_SCOPES", str | None, None, "the scopes a refresh asks for"),
    ("XERO_DAY_RESERVE", int, 500, "of Xero's 5,000 calls a day, what a run never spends"),
    ("XERO_NEEDED_CALLS", int, 100, "calls kept above the reserve for the needed reads"),
    ("XERO_MINUTE_WAIT", float, 60.0, "seconds to wait when no call is left this minute"),
    ("XERO_MAX_WAIT", float, 120.0, "the longest Retry-After a 429 is waited for"),
    ("XERO_PAYMENT_LINKS", bool, True, "read the online invoice URLs as payment links"),
    ("XERO_AGING_REPORT", bool, True, "read the Aged Receivables report for the reconciliation"),
    ("XERO_FULL_SYNC_DAYS", int, 7, "days between full pulls (If-Modified-Since in between)"),
    ("XERO_PAYMENT_DAYS", int, 35, "how far back Xero payments are read"),
    ("XERO_BLOCK", str, "arflow-xero", "the Prefect block that, where saved, wins"),
    # Stripe
    ("STRIPE_API_KEY", SECRET, None, "Stripe secret or restricted key"),
    ("STRIPE_BASE_URL", str | None, None, "Stripe's API base (a local server in tests)"),
    ("STRIPE_WEBHOOK_SECRET", SECRET, None, "the webhook endpoint's signing secret (whsec_...)"),
    ("STRIPE_PAYMENT_DAYS", int, 35, "how far back Stripe payments are read"),
    ("STRIPE_BLOCK", str, "arflow-stripe", "the Prefect block that, where saved, wins"),
    # Salesforce
    ("SFDC_INSTANCE_URL", str | None, None, "Salesforce instance, with a session id"),
    ("SFDC_SESSION_ID", SECRET, None, "a Salesforce session id"),
    ("SFDC_USERNAME", str | None, None, "Salesforce user, for username-password sign-in"),
    ("SFDC_PASSWORD", SECRET, None, "its password"),
    ("SFDC_SECURITY_TOKEN", SECRET, None, "its security token"),
    ("SFDC_DOMAIN", str, "login", "login, test, or a My Domain"),
    ("SFDC_FIELD_MAP", Path | None, None, "the field map file (default salesforce_fields.yaml)"),
    ("SALESFORCE_BLOCK", str, "arflow-salesforce", "the Prefect block that, where saved, wins"),
    # HubSpot
    ("HUBSPOT_TOKEN", SECRET, None, "HubSpot private-app token"),
    ("HUBSPOT_CLIENT_ID", str | None, None, "HubSpot OAuth app's client id"),
    ("HUBSPOT_CLIENT_SECRET", SECRET, None, "its client secret"),
    ("HUBSPOT_REFRESH_TOKEN", SECRET, None, "its refresh token"),
    ("HUBSPOT_BASE_URL", str | None, None, "HubSpot's API base (a local server in tests)"),
    ("HUBSPOT_FIELD_MAP", Path | None, None, "the field map file (default hubspot_fields.yaml)"),
    ("HUBSPOT_DAILY_RESERVE", int, 100, "of the day's HubSpot calls, what a run never spends"),
    ("HUBSPOT_SEARCH_INTERVAL", float, 0.25, "seconds between search calls (HubSpot's search limit)"),
    ("HUBSPOT_BLOCK", str, "arflow-hubspot", "the Prefect block that, where saved, wins"),
    ("CHARGEBEE_SITE", str | None, None, "the Chargebee site (acme for acme.chargebee.com)"),
    ("CHARGEBEE_API_KEY", SECRET, None, "Chargebee API key that reads (a read-only key is enough)"),
    ("CHARGEBEE_CHARGE_API_KEY", SECRET, None, "the Chargebee key collect_payment uses (default: the reading key)"),
    ("CHARGEBEE_WEBHOOK_USERNAME", str | None, None, "basic-auth user of Chargebee's webhook to arflow"),
    ("CHARGEBEE_WEBHOOK_PASSWORD", SECRET, None, "its password"),
    ("CHARGEBEE_BASE_URL", str | None, None, "replaces https://{site}.chargebee.com (a local server in tests)"),
    ("CHARGEBEE_PAYMENT_DAYS", int, 35, "how far back Chargebee payments are read"),
    ("CHARGEBEE_BLOCK", str, "arflow-chargebee", "the Prefect block that, where saved, wins"),
)


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, case_sensitive=False, extra="ignore")


ArflowSettings = create_model(
    "ArflowSettings", __base__=_Base,
    **{name.lower(): (kind, Field(default, description=text)) for name, kind, default, text in VARIABLES})
NAMES = frozenset(PREFIX + name for name, *_ in VARIABLES)


class SettingsError(ValueError):
    """One or more variables hold a value of the wrong type."""


def load() -> BaseSettings:
    """The settings in effect; a wrong value is one error naming every bad variable."""
    try:
        return ArflowSettings()
    except ValidationError as err:
        bad = [f"{PREFIX}{str(e['loc'][0]).upper()}: {e['msg']}" for e in err.errors()]
        raise SettingsError("invalid configuration: " + "; ".join(bad)) from None


def shown(settings: BaseSettings, environ) -> list[dict]:
    """One row per variable: its value in effect (a secret only as set / not set, a URL's password
    masked), where it came from, and what it does."""
    rows = []
    for name, kind, default, text in VARIABLES:
        value = getattr(settings, name.lower())
        if isinstance(value, SecretStr):
            value = "set (hidden)"
        elif kind is SECRET:
            value = "not set"
        rows.append({"variable": PREFIX + name, "value": "" if value is None else redact(value),
                     "source": "environment" if (PREFIX + name) in environ else "default", "meaning": text})
    return rows
