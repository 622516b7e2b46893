"""Time the whole daily flow on N generated open invoices; print one JSON object.

    python benchmarks/daily_run.py --invoices 100000 [--customers N] [--as-of 2026-11-23] [--partitions N]
        [--dask-address tcp://host:8786] [--db-url postgresql+psycopg://...]

Uses a fresh SQLite ledger and CSV source in a temporary folder. Starts Prefect's temporary server
unless PREFECT_API_URL points at a running one (then `seconds` excludes the server start-up).
Seconds per hop come from the Prefect API (each task run's total run time). With --partitions N > 1
the enrich, score and plan hops run as N `plan_partition` task runs on Dask (a LocalCluster of
ARFLOW_DASK_WORKERS processes, default 2, or --dask-address): `hops_seconds.plan_partition` is their
sum over the partitions; `partitioned` is the run summary's (the rows per partition, the workers, the
wall seconds from the split to the merge, the largest worker's peak RSS), and `peak_rss_mb` is the
flow's process alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")



def generate(folder: Path, n_invoices: int, n_customers: int, as_of: dt.date, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cid = np.char.add("C", np.arange(n_customers).astype(str))
    seg = rng.choice(["strategic", "standard", "transactional"], n_customers, p=[0.1, 0.6, 0.3])
    country = rng.choice(["US", "GB", "DE", "CA", "FR", "JP"], n_customers, p=[0.6, 0.1, 0.1, 0.1, 0.05, 0.05])
    pd.DataFrame({
        "customer_id": cid, "name": np.char.add("Customer ", cid), "segment": seg,
        "arr": (rng.integers(1_000, 500_000, n_customers)).astype(str), "tenure_months": rng.integers(1, 120, n_customers),
        "nps": rng.integers(-50, 80, n_customers), "health": rng.choice(["healthy", "at_risk"], n_customers, p=[0.85, 0.15]),
        "renewal_date": (pd.Timestamp(as_of) + pd.to_timedelta(rng.integers(-30, 400, n_customers), unit="D")).strftime("%Y-%m-%d"),
        "owner_ae_email": "ae@example.com", "owner_csm_email": "csm@example.com", "billing_contact_name": "Pat",
        "billing_contact_email": np.char.add(np.char.add("ap@", np.char.lower(cid)), ".example.com"),
        "country": country, "opt_out": "false", "paused_until": "",
    }).to_csv(folder / "customers.csv", index=False)
    cust = rng.integers(0, n_customers, n_invoices)
    currency = np.where(country[cust] == "JP", "JPY", np.where(np.isin(country[cust], ["DE", "FR"]), "EUR", "USD"))
    issue = pd.Timestamp(as_of) - pd.to_timedelta(rng.integers(0, 200, n_invoices), unit="D")
    cents = rng.integers(1_000, 5_000_000, n_invoices)
    amount = np.where(currency == "JPY", (cents // 100).astype(str),
                      np.char.add(np.char.add((cents // 100).astype(str), "."), np.char.zfill((cents % 100).astype(str), 2)))
    ids = np.char.add("INV", np.arange(n_invoices).astype(str))
    pd.DataFrame({
        "invoice_id": ids, "customer_id": cid[cust], "invoice_number": np.arange(n_invoices) + 100000,
        "issue_date": issue.strftime("%Y-%m-%d"), "due_date": (issue + pd.Timedelta(days=30)).strftime("%Y-%m-%d"),
        "terms": "net30", "currency": currency, "amount": amount, "balance": amount, "status": "open",
        "autopay": rng.choice(["true", "false"], n_invoices, p=[0.2, 0.8]),
        "payment_link": np.char.add("https://pay.example.com/", ids), "po_number": "",
    }).to_csv(folder / "invoices.csv", index=False)


async def _task_seconds(flow_run_id: str) -> dict[str, float]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                           sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200)
    out: dict[str, float] = {}
    for r in runs:
        name = r.name.rsplit("-", 1)[0]
        out[name] = round(out.get(name, 0.0) + r.total_run_time.total_seconds(), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--invoices", type=int, default=10_000)
    ap.add_argument("--customers", type=int, default=0, help="default: invoices / 20")
    ap.add_argument("--as-of", default="2026-11-23")
    ap.add_argument("--partitions", type=int, default=1, help="customer partitions on Dask (1: one process)")
    ap.add_argument("--dask-address", default=None, help="a running Dask scheduler (default: a LocalCluster)")
    ap.add_argument("--db-url", default=None, help="the ledger (default: a fresh SQLite file)")
    args = ap.parse_args()
    as_of = dt.date.fromisoformat(args.as_of)
    n_customers = args.customers or max(10, args.invoices // 20)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        generate(tmp / "src", args.invoices, n_customers, as_of)
        gen_seconds = time.perf_counter() - t0
        os.environ["ARFLOW_DATA_DIR"] = str(tmp)
        os.environ["ARFLOW_DB_URL"] = args.db_url or f"sqlite:///{tmp / 'ledger.db'}"
        with contextlib.redirect_stdout(sys.stderr):
            from flows.daily_ar import daily_ar

            t1 = time.perf_counter()
            summary = daily_ar(as_of=as_of, source=f"csv:{tmp / 'src'}", partitions=args.partitions,
                               dask_address=args.dask_address)
            seconds = time.perf_counter() - t1
            hops = asyncio.run(_task_seconds(summary["run_id"]))
    print(json.dumps({
        "invoices": args.invoices, "customers": n_customers, "partitions": args.partitions,
        "seconds": round(seconds, 2), "partitioned": summary.get("partitioned"),
        "generate_seconds": round(gen_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "prefect_server": "running" if os.environ.get("PREFECT_API_URL") else "temporary (start-up included)",
        "hops_seconds": hops, "outcomes": summary["outcomes"], "actions": sum(summary["actions"].values()),
    }))


if __name__ == "__main__":
    main()
