"""Past one machine (docs/scale.md): daily_ar's enrich, score and plan hops by customer partition,
each partition a Prefect task run on a Dask cluster through prefect-dask's DaskTaskRunner: the
scheduler at `address` (ARFLOW_DASK_ADDRESS), or a LocalCluster of ARFLOW_DASK_WORKERS worker
processes started for the run and stopped after it.

Everything the partitions need from the ledger is read here, in the flow's process, before they
start (the touch history, the stop records, the payment history, the plan schedule), and the
late-payment model is fitted here on the whole history: a worker never opens the ledger, so
nothing crosses to it but frames, the policy and the model. The partitions' results come back to
the flow's process, which merges them (tasks/partitions.py) and goes on as in one process:
attachments, the lanes' outbox writes and sends, the report.
"""

from __future__ import annotations

import datetime as dt
import os
import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from arflow.policy import Policy
from connectors.ledger.store import Ledger
from tasks import hops, partitions


@task(name="plan_partition", cache_policy=NO_CACHE)
def plan_partition(part: dict, stops: dict, as_of: dt.date, policy: Policy, mismatched: set[str], mode: str,
                   late_model) -> dict:
    """Enrich, score and plan one customer partition (on a Dask worker)."""
    return partitions.run_partition(part, stops=stops, as_of=as_of, policy=policy, mismatched=mismatched,
                                    mode=mode, late_model=late_model)


def task_runner(address: str | None = None, workers: int | None = None):
    """prefect-dask's DaskTaskRunner on the cluster at `address` (or ARFLOW_DASK_ADDRESS), else on
    a LocalCluster of `workers` (or ARFLOW_DASK_WORKERS, default 2) processes, one thread each."""
    from prefect_dask import DaskTaskRunner

    address = address or os.environ.get("ARFLOW_DASK_ADDRESS") or None
    if address:
        return DaskTaskRunner(address=address)
    n = int(workers or os.environ.get("ARFLOW_DASK_WORKERS") or 2)
    return DaskTaskRunner(cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def plan_by_partition(aged, customers, inputs: hops.Inputs, as_of: dt.date, policy: Policy, mismatched: set[str],
                      ledger: Ledger, mode: str, n: int, address: str | None = None):
    """(enriched, scored, planned, actions, cohort, info) where the first five are what
    hops.enrich_context, hops.score, pilot.cohort and hops.plan_actions give in one process, computed
    by `n` customer partitions on Dask; info: the partitions' rows, the workers, the seconds from the
    split to the merge and the workers' peak memory (the run's summary, `partitioned`)."""
    from tasks import late_model
    from tasks.touches import namespace

    touches = ledger.touch_history(namespace(mode))
    dry = ledger.touch_history("dry-run") if policy.pilot.enabled and mode != "dry-run" else None
    installments = ledger.plan_schedule(as_of)
    history = inputs.history
    model = late_model.fit(history) if history is not None and len(history) and len(aged) else None
    clock = _Clock()
    parts = partitions.split(aged, customers, history, touches, dry, installments, n)
    clock.lap("split")
    with task_runner(address) as runner:
        clock.lap("cluster_start")
        # Each partition's frames sent to the cluster once, ahead of its task (a list: a scattered
        # dict would name the data by its keys, the same in every partition).
        client = runner.client
        stops, shared_policy, shared_model = client.scatter([inputs.stops, policy, model], broadcast=True)
        sent = client.scatter(parts)
        clock.lap("send")
        futures = [runner.submit(plan_partition, parameters={
            "part": part, "stops": stops, "as_of": as_of, "policy": shared_policy, "mismatched": mismatched,
            "mode": mode, "late_model": shared_model}) for part in sent]
        results = [f.result() for f in futures]
        clock.lap("tasks")
        info = {"partitions": n, "rows": [len(p["aged"]) for p in parts], "workers": len(client.scheduler_info()["workers"]),
                "scheduler": address or os.environ.get("ARFLOW_DASK_ADDRESS") or "LocalCluster",
                "worker_peak_rss_mb": _worker_peak_rss(client)}
        clock.lap("tasks")
    clock.lap("cluster_stop")
    merged = partitions.merge(results, aged, policy)
    clock.lap("merge")
    info["seconds"] = clock.total()
    info["seconds_by_step"] = clock.laps
    return (*merged, info)


def _worker_peak_rss(client) -> float | None:
    """The largest peak resident memory of the cluster's workers (MB), where they report it."""
    def peak():
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    try:
        return round(max(client.run(peak).values()), 1)
    except Exception:  # noqa: BLE001 - a cluster that refuses client.run: not reported
        return None


class _Clock:
    """Wall seconds of each step of a partitioned run (the summary's partitioned.seconds_by_step)."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self.last, 2)
        self.last = now

    def total(self) -> float:
        return round(self.last - self.started, 2)
