from __future__ import annotations

import csv
import datetime as dt
import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from arflow.config import ROOT  # noqa: E402
from arflow.policy import load_policy  # noqa: E402
from connectors.sources import (AGING_COLUMNS, CUSTOMER_COLUMNS, INVOICE_COLUMNS,  # noqa: E402
                                PAYMENT_COLUMNS)

PG_ADMIN = os.environ.get("ARFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
AS_OF = dt.date(2026, 11, 23)  # a Monday


@pytest.fixture(scope="session")
def policy():
    return load_policy(ROOT / "policy.yaml")


@pytest.fixture(scope="session", autouse=True)
def _no_prefect_server_of_its_own():
    """Code under test that reaches for a Prefect API without the session's server (prefect_server)
    fails at once instead of starting a temporary server inside pytest (seconds each, and a log line
    on a closed stream at exit). A block lookup then falls back to the environment, as it does where
    no API answers. Subprocesses keep Prefect's default: this is the test process's settings only."""
    from prefect.settings import PREFECT_SERVER_ALLOW_EPHEMERAL_MODE, temporary_settings

    with temporary_settings(updates={PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: False}):
        yield


def pytest_collection_modifyitems(config, items):
    """Markers by where a test is and what it needs, so `make test-fast` can leave the slow ones out:
    tests/e2e are `e2e`; tests/flows and every test on the Prefect server are `flow`."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        if "flows" in parts or "prefect_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.flow)


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server for the whole session, started by the first test that needs one:
    the flow tests (tests/flows/conftest.py), the CLI run in this process (tests/cli.py) and the CLI's
    subprocesses (through PREFECT_API_URL). It overrides whatever PREFECT_API_URL the environment has."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL at {PG_ADMIN} not reachable: {exc.__class__.__name__}"


@pytest.fixture
def pg_url():
    """A fresh schema in the test database; dropped afterwards."""
    why = _pg_reachable()
    if why:
        pytest.skip(why)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("pg_url")


def customer(cid: str = "C1", **kw) -> dict:
    row = {"customer_id": cid, "name": f"Customer {cid}", "segment": "standard", "arr": "50000.00",
           "tenure_months": "24", "nps": "30", "health": "healthy", "renewal_date": "2027-09-01",
           "owner_ae_email": "ae@example.com", "owner_csm_email": "csm@example.com",
           "billing_contact_name": "Pat Payer", "billing_contact_email": f"ap@{cid.lower()}.example.com",
           "country": "US", "opt_out": "false", "paused_until": ""}
    row.update(kw)
    return row


def invoice(iid: str = "I1", cid: str = "C1", **kw) -> dict:
    row = {"invoice_id": iid, "customer_id": cid, "invoice_number": f"N-{iid}", "issue_date": "2026-10-01",
           "due_date": "2026-10-31", "terms": "net30", "currency": "USD", "amount": "1000.00",
           "balance": "1000.00", "status": "open", "autopay": "false",
           "payment_link": f"https://pay.example.com/{iid}", "po_number": ""}
    row.update(kw)
    return row


def write_csv(path: Path, columns, rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns))
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})


def make_source(folder: Path, invoices: list[dict], customers: list[dict], aging: list[dict] | None = None,
                payments: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "invoices.csv", INVOICE_COLUMNS, invoices)
    write_csv(folder / "customers.csv", CUSTOMER_COLUMNS, customers)
    if aging is not None:
        write_csv(folder / "aging_report.csv", AGING_COLUMNS, aging)
    if payments is not None:
        write_csv(folder / "payments.csv", PAYMENT_COLUMNS, payments)
    return folder
