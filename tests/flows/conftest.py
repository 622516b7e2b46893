import datetime as dt
import shutil

import pytest
from prefect.testing.utilities import prefect_test_harness

from arflow import demo

ANCHOR = dt.date(2026, 11, 23)


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """One temporary Prefect server for every flow test (and the CLI subprocesses, through PREFECT_API_URL)."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


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
