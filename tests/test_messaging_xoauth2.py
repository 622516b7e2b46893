"""SMTP without passwords: AUTH XOAUTH2 with a Microsoft 365 token (msal, client credentials) or a
Google Workspace token (google-auth: a service account acting as the mailbox, or a refresh token),
the real libraries talking to a local token endpoint and a local SMTP server
(tests/fake_mail_oauth.py). The token is reused while it lives, replaced near its expiry, replaced
once after a 535, and never appears in an error or a log line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from arflow.safety import redact
from connectors.mail_oauth import TokenSource
from connectors.messaging import ChannelNotConfigured, SendError, SmtpConfig, SmtpMailer, compose
from tests.cli import arflow, env_delta
from tests.fake_mail_oauth import OAuthMail

CUSTOMER = "treasurer@bayside.example"


@pytest.fixture
def mail(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("ARFLOW_SMTP")]:
        monkeypatch.delenv(name)
    with OAuthMail(tmp_path) as world:
        yield world


def _use(monkeypatch, env: dict) -> SmtpConfig:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return SmtpConfig.from_env()


def _msg(key: str = "k1", to: str = CUSTOMER):
    return compose(sender="ar@yourco.example", to=[to], cc=[], subject=f"Invoice INV-0038 ({key})",
                   body="Your invoice is due.", key=key)


def test_microsoft_send_authenticates_as_the_mailbox_with_the_apps_token(mail, monkeypatch):
    cfg = _use(monkeypatch, mail.env("microsoft"))
    assert cfg.auth == "xoauth2" and cfg.oauth.provider == "microsoft" and "app-secret" not in repr(cfg)
    with SmtpMailer(cfg, tokens=TokenSource(cfg.oauth)) as mailer:
        mailer.send(_msg("k1"))
        mailer.send(_msg("k2"))
    assert [m["Subject"] for m in mail.mailbox.to(CUSTOMER)] == ["Invoice INV-0038 (k1)", "Invoice INV-0038 (k2)"]
    token, _for = mail.tokens.issued[0]
    assert mail.mailbox.auths == [{"user": "ar@yourco.example", "token": token, "ok": True, "well_formed": True}]
    assert mail.tokens.hits == 1 and len(token) > 1000  # one token; a long AUTH line got through
    # msal found the token endpoint by the tenant's OpenID configuration, and asked for Exchange's scope
    paths = [(r["method"], r["path"]) for r in mail.tokens.requests]
    assert ("GET", f"/{mail.tokens.tenant}/v2.0/.well-known/openid-configuration") in paths
    post = next(r for r in mail.tokens.requests if r["method"] == "POST")
    assert "scope=https%3A%2F%2Foutlook.office365.com%2F.default" in post["body"]
    assert "grant_type=client_credentials" in post["body"]


@pytest.mark.parametrize("google_mode", ["service_account", "refresh_token"])
def test_google_send_with_a_service_account_or_a_refresh_token(tmp_path, monkeypatch, google_mode):
    for name in [n for n in os.environ if n.startswith("ARFLOW_SMTP")]:
        monkeypatch.delenv(name)
    with OAuthMail(tmp_path, style="google") as mail:
        cfg = _use(monkeypatch, mail.env("google", google_mode=google_mode))
        with SmtpMailer(cfg, tokens=TokenSource(cfg.oauth)) as mailer:
            mailer.send(_msg())
        assert len(mail.mailbox.to(CUSTOMER)) == 1
        token, issued_for = mail.tokens.issued[0]
        assert mail.mailbox.auths[0]["token"] == token and mail.mailbox.auths[0]["user"] == "ar@yourco.example"
        assert issued_for == "ar@yourco.example"  # a service account's assertion names the mailbox as its subject
        post = next(r for r in mail.tokens.requests if r["method"] == "POST")
        grant = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" if google_mode == "service_account" \
            else "refresh_token"
        assert f"grant_type={grant}" in post["body"]


def test_a_token_is_reused_while_it_lives_and_replaced_near_expiry(mail, monkeypatch):
    cfg = _use(monkeypatch, mail.env("microsoft"))
    now = [1000.0]
    tokens = TokenSource(cfg.oauth, clock=lambda: now[0])
    for key in ("a", "b"):  # two runs (two connections) within the token's hour
        with SmtpMailer(cfg, tokens=tokens) as mailer:
            mailer.send(_msg(key))
        now[0] += 1000
    assert mail.tokens.hits == 1 and len({a["token"] for a in mail.mailbox.auths}) == 1
    now[0] = 1000 + 3599 - 299  # within five minutes of its expiry: a new one before connecting
    with SmtpMailer(cfg, tokens=tokens) as mailer:
        mailer.send(_msg("c"))
    assert mail.tokens.hits == 2
    assert [a["token"] for a in mail.mailbox.auths][-1] == mail.tokens.issued[1][0] != mail.tokens.issued[0][0]
    assert len(mail.mailbox.messages) == 3


@pytest.mark.parametrize("style", ["microsoft", "google"])
def test_a_revoked_token_gets_535_then_one_new_token_and_the_send_goes(tmp_path, monkeypatch, style):
    for name in [n for n in os.environ if n.startswith("ARFLOW_SMTP")]:
        monkeypatch.delenv(name)
    with OAuthMail(tmp_path, style=style) as mail:
        cfg = _use(monkeypatch, mail.env("microsoft"))
        tokens = TokenSource(cfg.oauth)
        with SmtpMailer(cfg, tokens=tokens) as mailer:
            mailer.send(_msg("first"))
        mail.tokens.revoke_all()  # still within its hour by the clock, but no longer good
        with SmtpMailer(cfg, tokens=tokens) as mailer:
            mailer.send(_msg("second"))
        assert [a["ok"] for a in mail.mailbox.auths] == [True, False, True]
        assert mail.tokens.hits == 2 and len(mail.mailbox.messages) == 2
        if style == "google":  # the 334 error challenge was answered with the empty line
            assert mail.mailbox.auths[1]["after_challenge"] == b""


def test_still_refused_after_a_new_token_is_a_clear_error_without_the_token(mail, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    cfg = _use(monkeypatch, mail.env("microsoft"))
    mail.mailbox.user = "someone-else@yourco.example"  # the app has no permission on this mailbox
    with pytest.raises(SendError) as err, SmtpMailer(cfg, tokens=TokenSource(cfg.oauth)) as mailer:
        mailer.send(_msg())
    text = str(err.value)
    assert text.startswith("smtp: authenticate with XOAUTH2 (Microsoft (tenant contoso.onmicrosoft.com)) "
                           "as ar@yourco.example at 127.0.0.1:"), text
    assert "refused after a new token: 535 5.7.3 Authentication unsuccessful" in text
    assert not err.value.transient and mail.tokens.hits == 2 and not mail.mailbox.messages
    # the batch's next message fails at once with the same line: no more tokens, no more connections
    with pytest.raises(SendError) as again:
        mailer.send(_msg("k2"))
    assert str(again.value) == text and mail.tokens.hits == 2 and len(mail.mailbox.auths) == 2
    logged = caplog.text + text
    assert mail.tokens.issued and not [s for s in mail.secrets() if s in logged]


def test_a_temporary_auth_failure_is_transient_and_keeps_the_token(mail, monkeypatch):
    cfg = _use(monkeypatch, mail.env("microsoft"))
    mail.mailbox.unavailable = "454 4.7.0 Temporary authentication failure"
    with pytest.raises(SendError) as err, SmtpMailer(cfg, tokens=TokenSource(cfg.oauth)) as mailer:
        mailer.send(_msg())
    assert err.value.transient and "refused: 454 4.7.0 Temporary authentication failure" in str(err.value)
    assert mail.tokens.hits == 1 and len(mail.mailbox.auths) == 1  # not a token problem: no new token


def test_a_token_endpoint_refusal_names_the_step_and_not_the_secret(mail, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    cfg = _use(monkeypatch, mail.env("microsoft") | {"ARFLOW_SMTP_OAUTH_CLIENT_SECRET": "wrong-secret-value-x"})
    with pytest.raises(SendError) as err, SmtpMailer(cfg, tokens=TokenSource(cfg.oauth)) as mailer:
        mailer.send(_msg())
    assert str(err.value).startswith("smtp: get an OAuth token from Microsoft (tenant contoso.onmicrosoft.com) "
                                     "failed: invalid_client: AADSTS7000215: Invalid client secret provided")
    assert not err.value.transient and not mail.mailbox.auths
    assert "wrong-secret-value-x" not in caplog.text + str(err.value)


def test_a_revoked_google_refresh_token_is_a_clear_error(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("ARFLOW_SMTP")]:
        monkeypatch.delenv(name)
    with OAuthMail(tmp_path, style="google") as mail:
        cfg = _use(monkeypatch, mail.env("google", google_mode="refresh_token"))
        mail.tokens.revoked_grants = True
        with pytest.raises(SendError) as err, SmtpMailer(cfg, tokens=TokenSource(cfg.oauth)) as mailer:
            mailer.send(_msg())
        assert str(err.value).startswith("smtp: get an OAuth token from Google (refresh token) failed: invalid_grant")
        assert "Token has been expired or revoked" in str(err.value) and mail.tokens.refresh_token not in str(err.value)


def test_a_missing_service_account_key_is_a_clear_error(mail, monkeypatch, tmp_path):
    env = mail.env("google") | {"ARFLOW_SMTP_OAUTH_SERVICE_ACCOUNT_FILE": str(tmp_path / "nowhere.json")}
    cfg = _use(monkeypatch, env)
    with pytest.raises(SendError) as err, SmtpMailer(cfg, tokens=TokenSource(cfg.oauth)) as mailer:
        mailer.send(_msg())
    assert str(err.value) == ("smtp: get an OAuth token from Google (service account) failed: the service account "
                              "key cannot be read (FileNotFoundError)") and not err.value.transient
    assert mail.tokens.hits == 0


@pytest.mark.parametrize("drop, named", [
    ("ARFLOW_SMTP_OAUTH_CLIENT_ID", "ARFLOW_SMTP_OAUTH_CLIENT_ID"),
    ("ARFLOW_SMTP_OAUTH_CLIENT_SECRET", "ARFLOW_SMTP_OAUTH_CLIENT_SECRET"),
    ("ARFLOW_SMTP_USER", "ARFLOW_SMTP_USER"),
    ("ARFLOW_SMTP_OAUTH_PROVIDER", "ARFLOW_SMTP_OAUTH_PROVIDER"),
])
def test_xoauth2_without_what_it_needs_is_refused_naming_it(mail, monkeypatch, drop, named):
    env = mail.env("microsoft")
    env.pop(drop)
    with pytest.raises(ChannelNotConfigured) as err:
        _use(monkeypatch, env)
    assert named in str(err.value) and "app-secret-value" not in str(err.value)


def test_an_unknown_auth_is_refused(monkeypatch):
    monkeypatch.setenv("ARFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ARFLOW_SMTP_AUTH", "kerberos")
    with pytest.raises(ChannelNotConfigured, match="ARFLOW_SMTP_AUTH must be password or xoauth2"):
        SmtpConfig.from_env()


def test_redaction_masks_bearer_tokens_and_the_xoauth2_response():
    import base64

    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL291dGxvb2sifQ.c2ln"
    initial = base64.b64encode(f"user=ar@yourco.example\x01auth=Bearer {token}\x01\x01".encode()).decode()
    for text in (f"Authorization: Bearer {token}", f"send: 'AUTH XOAUTH2 {initial}\\r\\n'",
                 f"user=ar@yourco.example\x01auth=Bearer {token}\x01\x01"):
        clean = redact(text)
        assert token not in clean and initial not in clean and "***" in clean, clean
    assert redact("the bearer token was refused") == "the bearer token was refused"


def _cli(args, env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("ARFLOW_")} | env
    return arflow(args, env_delta(full))


@pytest.mark.usefixtures("prefect_server")
def test_check_connection_smtp_signs_in_with_xoauth2_and_sends_nothing(mail, tmp_path):
    env = mail.env("microsoft") | {"ARFLOW_DATA_DIR": str(tmp_path)}
    p = _cli(["check-connection", "smtp", "--json"], env)
    assert p.returncode == 0, p.stderr
    found = json.loads(p.stdout)
    assert found == {**found, "system": "smtp", "server": f"127.0.0.1:{mail.port}", "config": "environment",
                     "auth": "xoauth2", "user": "ar@yourco.example", "signed_in": True,
                     "oauth_provider": "Microsoft (tenant contoso.onmicrosoft.com)", "tokens_fetched": 1,
                     "noop": "250 2.0.0 OK", "messages_sent": 0}
    assert 3000 < found["token_expires_in_s"] <= 3599
    assert mail.mailbox.noops == 1 and not mail.mailbox.messages and [a["ok"] for a in mail.mailbox.auths] == [True]
    assert not [s for s in mail.secrets() if s in p.stdout + p.stderr]
    text = _cli(["check-connection", "smtp"], env)
    assert text.returncode == 0 and "auth: xoauth2\n" in text.stdout and "messages_sent: 0\n" in text.stdout


@pytest.mark.usefixtures("prefect_server")
def test_check_connection_smtp_says_which_step_failed(mail, tmp_path):
    mail.mailbox.user = "someone-else@yourco.example"
    p = _cli(["check-connection", "smtp"], mail.env("microsoft") | {"ARFLOW_DATA_DIR": str(tmp_path)})
    assert p.returncode == 1 and p.stderr.startswith("arflow: error: smtp: authenticate with XOAUTH2"), p.stderr
    assert "535" in p.stderr and "Traceback" not in p.stderr
    assert not [s for s in mail.secrets() if s in p.stdout + p.stderr]
    env = mail.env("microsoft") | {"ARFLOW_DATA_DIR": str(tmp_path)}
    env.pop("ARFLOW_SMTP_OAUTH_CLIENT_ID")
    p = _cli(["check-connection", "smtp"], env)
    assert p.returncode == 1 and "ARFLOW_SMTP_OAUTH_CLIENT_ID" in p.stderr, p.stderr


@pytest.mark.usefixtures("prefect_server")
def test_check_connection_smtp_with_a_password_server(tmp_path):
    from aiosmtpd.controller import Controller

    from tests.mail import MailSink, free_port

    sink, port = MailSink(), free_port()
    server = Controller(sink, hostname="127.0.0.1", port=port)
    server.start()
    try:
        p = _cli(["check-connection", "smtp", "--json"], {"ARFLOW_SMTP_HOST": "127.0.0.1", "ARFLOW_SMTP_PORT": str(port),
                                                          "ARFLOW_SMTP_BLOCK": "none", "ARFLOW_DATA_DIR": str(tmp_path)})
    finally:
        server.stop()
    assert p.returncode == 0, p.stderr
    found = json.loads(p.stdout)
    assert found["auth"] == "none" and found["noop"].startswith("250") and not sink.messages


def test_a_refused_password_login_fails_the_batch_once(monkeypatch):
    """Password sign-in as before (ARFLOW_SMTP_AUTH unset): a refusal is the same one-line error, and
    the batch's next message does not try again."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from tests.mail import MailSink, free_port

    tries = []

    def refuse(server, session, envelope, mechanism, auth_data):
        tries.append(mechanism)
        return AuthResult(success=False, handled=False)

    port = free_port()
    server = Controller(MailSink(), hostname="127.0.0.1", port=port, authenticator=refuse, auth_require_tls=False)
    server.start()
    try:
        for k, v in {"ARFLOW_SMTP_HOST": "127.0.0.1", "ARFLOW_SMTP_PORT": str(port), "ARFLOW_SMTP_USER": "ar",
                     "ARFLOW_SMTP_PASSWORD": "hunter2-wrong"}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("ARFLOW_SMTP_AUTH", raising=False)
        cfg = SmtpConfig.from_env()
        assert cfg.auth == "password" and "hunter2" not in repr(cfg)
        with SmtpMailer(cfg) as mailer:
            for key in ("a", "b"):
                with pytest.raises(SendError, match=rf"SMTP 127.0.0.1:{port}: login refused \(535\)") as err:
                    mailer.send(_msg(key))
                assert not err.value.transient and "hunter2" not in str(err.value)
    finally:
        server.stop()
    assert tries == ["PLAIN", "LOGIN"]  # one login (smtplib tries each mechanism the server offers), not two
