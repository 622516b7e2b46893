import datetime as dt
import shutil

import pytest
from aiosmtpd.controller import Controller

from arflow import demo
from tests.mail import MailSink, free_port

ANCHOR = dt.date(2026, 11, 23)


@pytest.fixture(scope="session", autouse=True)
def _flows_use_the_server(prefect_server):
    """Every flow test talks to the session's temporary Prefect server (tests/conftest.py)."""


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory):
    return demo.generate(tmp_path_factory.mktemp("demo") / "demo", anchor=ANCHOR, seed=42)


@pytest.fixture
def data_dir(tmp_path, demo_folder, monkeypatch):
    """A project data folder with the session's demo in it and a fresh SQLite ledger."""
    shutil.copytree(demo_folder, tmp_path / "demo")
    monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ARFLOW_DB_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    return tmp_path


@pytest.fixture
def smtp(monkeypatch):
    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("ARFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ARFLOW_SMTP_PORT", str(port))
    monkeypatch.setenv("ARFLOW_MAIL_FROM", "ar@yourco.example")
    yield sink
    controller.stop()


@pytest.fixture
def slack(httpserver, monkeypatch):
    httpserver.expect_request("/services/T0/B0/x", method="POST").respond_with_data("ok")
    monkeypatch.setenv("ARFLOW_SLACK_WEBHOOK_URL", httpserver.url_for("/services/T0/B0/x"))
    return httpserver


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ARFLOW_DB_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    return tmp_path
