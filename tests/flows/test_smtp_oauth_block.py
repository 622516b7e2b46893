"""The XOAUTH2 settings from a saved `arflow SMTP server` block (arflow/blocks.py), which wins over
the environment as the password settings do; the mail goes out through the local token endpoint and
the checking SMTP server of tests/fake_mail_oauth.py."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr

from arflow.blocks import SmtpServer, smtp_config
from connectors.mail_oauth import TokenSource
from connectors.messaging import ChannelNotConfigured, SmtpMailer, compose
from tests.fake_mail_oauth import OAuthMail


@pytest.fixture
def mail(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("ARFLOW_SMTP")]:
        monkeypatch.delenv(name)
    with OAuthMail(tmp_path, style="google") as world:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(world.tokens.cert))
        yield world


def test_a_saved_block_with_a_google_refresh_token_sends(mail, monkeypatch):
    t = mail.tokens
    SmtpServer(host="127.0.0.1", port=mail.port, username=mail.user, mail_from=mail.user, auth="xoauth2",
               oauth_provider="google", oauth_client_id=t.client_id, oauth_client_secret=SecretStr(t.client_secret),
               oauth_refresh_token=SecretStr(t.refresh_token),
               oauth_token_url=t.google_token_url).save("arflow-smtp-oauth-test", overwrite=True)
    monkeypatch.setenv("ARFLOW_SMTP_BLOCK", "arflow-smtp-oauth-test")
    monkeypatch.setenv("ARFLOW_SMTP_HOST", "192.0.2.1")  # unreachable: the block must win
    cfg = smtp_config()
    assert cfg.auth == "xoauth2" and cfg.oauth.provider == "google" and cfg.source == "block arflow-smtp-oauth-test"
    assert t.refresh_token not in repr(cfg) and t.client_secret not in repr(cfg)
    mailer = SmtpMailer(cfg, tokens=TokenSource(cfg.oauth))
    assert mailer.check()["config"] == "block arflow-smtp-oauth-test"
    with mailer:
        mailer.send(compose(sender=mail.user, to=["treasurer@bayside.example"], cc=[], subject="Invoice INV-0038",
                            body="Due.", key="block-1"))
    assert len(mail.mailbox.to("treasurer@bayside.example")) == 1
    assert [a["ok"] for a in mail.mailbox.auths] == [True, True] and t.hits == 1


def test_a_block_that_asks_for_xoauth2_without_a_provider_is_refused_naming_the_block(mail, monkeypatch):
    SmtpServer(host="127.0.0.1", port=mail.port, username=mail.user, auth="xoauth2").save(
        "arflow-smtp-oauth-bad", overwrite=True)
    monkeypatch.setenv("ARFLOW_SMTP_BLOCK", "arflow-smtp-oauth-bad")
    with pytest.raises(ChannelNotConfigured, match=r"XOAUTH2 \(from the block arflow-smtp-oauth-bad\) needs a provider.*ARFLOW_SMTP_OAUTH_PROVIDER"):
        smtp_config()
