import datetime as dt
import shutil

import pytest

from arflow import demo

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
