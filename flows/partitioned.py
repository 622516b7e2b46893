"""Past one machine (docs/scale.md): daily_ar's enrich, score and plan hops, and the rendering and
guardrail check of each lane's messages, by customer partition, each partition a Prefect task run
on a Dask cluster through prefect-dask's DaskTaskRunner: the scheduler at `address`
(ARFLOW_DASK_ADDRESS), or a LocalCluster of ARFLOW_DASK_WORKERS worker processes started for the
run and stopped before the lanes write.

Everything the partitions need from the ledger is read here, in the flow's process, before they
start (the touch history, the stop records, the payment history, the plan schedule), and the
late-payment model is fitted here on the whole history: a worker never opens the ledger, so
nothing crosses to it but frames, the policy, the model and the run's invoice directory (for the
guardrails). The partitions' results come back to the flow's process, which merges them
(tasks/partitions.py) and goes on as in one process: the outbox writes, the sends, the report.
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


@task(name="render_partition", cache_policy=NO_CACHE)
def render_partition(part: dict, directory, cohort: set[str] | None, mode: str, run_id: str, as_of: dt.date,
                     policy: Policy) -> dict:
    """Render and check one customer partition's messages, lane by lane (on a Dask worker)."""
    return partitions.render_partition(part, directory=directory, cohort=cohort, mode=mode, run_id=run_id,
                                       as_of=as_of, policy=policy)


class Partitioned:
    """One Dask cluster for a run's partitioned hops (a context manager): plan() before the
    attachments, render() after them, then the cluster is stopped and the lanes write and send in
    the flow's process. `info`: the run summary's `partitioned`."""

    def __init__(self, n: int, address: str | None = None):
        self.n, self.address = n, address or os.environ.get("ARFLOW_DASK_ADDRESS") or None
        self.clock = _Clock()
        self.info: dict = {"partitions": n, "scheduler": self.address or "LocalCluster"}
        self.runner = None

    def __enter__(self):
        self.runner = task_runner(self.address).__enter__()
        self.clock.lap("cluster_start")
        self.info["workers"] = len(self.runner.client.scheduler_info()["workers"])
        return self

    def __exit__(self, *exc):
        if self.runner is None:
            return None
        self.info["worker_peak_rss_mb"] = _worker_peak_rss(self.runner.client)
        runner, self.runner = self.runner, None
        runner.__exit__(*exc)
        self.clock.lap("cluster_stop")
        self.info["seconds"] = self.clock.total()
        self.info["seconds_by_step"] = self.clock.laps
        return None

    def _run(self, fn, parts: list[dict], shared: dict, **fixed) -> list:
        """`fn` over every partition on the cluster: the partitions' frames and the shared objects
        sent once ahead of the tasks (as lists: a scattered dict names the data by its keys)."""
        client = self.runner.client
        names = list(shared)
        sent_shared = dict(zip(names, client.scatter([shared[k] for k in names], broadcast=True)))
        sent = client.scatter(parts)
        self.clock.lap("send")
        futures = [self.runner.submit(fn, parameters={"part": part, **sent_shared, **fixed}) for part in sent]
        results = [f.result() for f in futures]
        self.clock.lap("tasks")
        return results

    def plan(self, aged, customers, inputs: hops.Inputs, as_of: dt.date, policy: Policy, mismatched: set[str],
             ledger: Ledger, mode: str):
        """(enriched, scored, planned, actions, cohort): what hops.enrich_context, hops.score,
        pilot.cohort and hops.plan_actions give in one process, computed by customer partition."""
        from tasks import late_model
        from tasks.touches import namespace

        touches = ledger.touch_history(namespace(mode))
        dry = ledger.touch_history("dry-run") if policy.pilot.enabled and mode != "dry-run" else None
        installments = ledger.plan_schedule(as_of)
        history = inputs.history
        model = late_model.fit(history) if history is not None and len(history) and len(aged) else None
        self.clock.lap("ledger_and_model")
        parts = partitions.split(aged, customers, history, touches, dry, installments, self.n)
        self.info["rows"] = [len(p["aged"]) for p in parts]
        self.clock.lap("split")
        results = self._run(plan_partition, parts, {"stops": inputs.stops, "policy": policy, "late_model": model},
                            as_of=as_of, mismatched=mismatched, mode=mode)
        merged = partitions.merge(results, aged, policy)
        self.clock.lap("merge")
        return merged

    def render(self, actions, invoices, cohort: set[str] | None, mode: str, run_id: str, as_of: dt.date,
               policy: Policy) -> dict:
        """(lane, mode) -> outbox rows, as each lane's queue_touches renders them in one process."""
        from tasks.touches import message_directory

        directory = message_directory(invoices)
        parts = partitions.split_actions(actions, invoices, self.n)
        self.clock.lap("split")
        results = self._run(render_partition, parts, {"directory": directory, "policy": policy}, cohort=cohort,
                            mode=mode, run_id=run_id, as_of=as_of)
        rendered = partitions.merge_rendered(results)
        self.clock.lap("merge")
        return rendered


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
