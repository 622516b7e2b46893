"""Past one machine (docs/scale.md): the per-invoice hops (enrich, score, plan) over one customer
partition, and the split before and the merge after them. No Prefect here: flows/partitioned.py
runs each partition as a Prefect task on a Dask cluster (prefect-dask's DaskTaskRunner).

Every customer's invoices fall in one partition (a stable hash of customer_id), and each partition
gets that customer's whole history, touches and plan schedule, so what the hops decide per
customer (the stop conditions, one message a customer and one lane a message, the gaps between
e-mails, the pilot cohort) is what one process decides. What is global is done once, outside the
partitions: the late-payment model is fitted in the flow's process on the whole history and handed
to every partition, and each hop's data-quality threshold is enforced on the merged check (a
partition checks with the threshold off, so a rejected share is judged over the whole run).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from arflow.policy import Policy
from tasks import hops, pilot, touches as touches_mod
from tasks.quality import CheckResult, enforce_threshold


def partition_of(customer_id: pd.Series, n: int) -> np.ndarray:
    """The partition (0..n-1) of each row's customer: pandas' fixed-key hash of the id as text, the
    same in every process and on every machine (Python's own str hash is salted per process)."""
    if n <= 1 or len(customer_id) == 0:
        return np.zeros(len(customer_id), dtype="int64")
    h = pd.util.hash_pandas_object(customer_id.astype(str).reset_index(drop=True), index=False).to_numpy()
    return (h % np.uint64(n)).astype("int64")


def _by_customer(frame: pd.DataFrame | None, ids: set) -> pd.DataFrame | None:
    if frame is None or "customer_id" not in frame:
        return frame
    return frame[frame["customer_id"].astype(str).isin(ids)]


def split(aged: pd.DataFrame, customers: pd.DataFrame, history: pd.DataFrame | None, touches: pd.DataFrame,
          dry_touches: pd.DataFrame | None, installments: pd.DataFrame | None, n: int) -> list[dict]:
    """The run's frames cut into n partitions by customer. Each partition carries its customers'
    rows of every frame (the stop records are small and go whole to each)."""
    part = partition_of(aged["customer_id"], n)
    out = []
    for k in range(n):
        rows = aged[part == k]
        ids = set(rows["customer_id"].astype(str))
        out.append({"index": k, "aged": rows, "customers": _by_customer(customers, ids),
                    "history": _by_customer(history, ids), "touches": _by_customer(touches, ids),
                    "dry_touches": _by_customer(dry_touches, ids), "installments": _by_customer(installments, ids)})
    return out


def _threshold_off(policy: Policy) -> Policy:
    dq = policy.data_quality.model_copy(update={"max_failure_share": 1.0})
    return policy.model_copy(update={"data_quality": dq})


def run_partition(part: dict, *, stops: dict[str, pd.DataFrame], as_of: dt.date, policy: Policy,
                  mismatched: set[str], mode: str, late_model) -> dict:
    """Enrich, score (the rules) and plan one partition, as hops.enrich_context, hops.score,
    pilot.cohort and hops.plan_actions do for the whole run."""
    lax = _threshold_off(policy)
    enriched = hops.enrich_frame(part["aged"], part["customers"], stops, part["history"], as_of, lax,
                                 late_model=late_model)
    scored = hops.score(enriched.frame, lax)
    cohort = pilot.cohort(scored.frame, policy, mode)
    touches = part["touches"]
    if cohort is not None:
        touches = pilot.history(touches, part["dry_touches"], cohort)
    planned, actions = hops.plan_actions(scored.frame, as_of, lax, mismatched=mismatched, touches=touches,
                                         installments=part["installments"])
    return {"index": part["index"], "enriched": enriched, "scored": scored, "planned": planned,
            "actions": actions, "cohort": cohort}


def _in_order(frames: list[pd.DataFrame], order: pd.Index) -> pd.DataFrame:
    """The partitions' rows back in the order of the frame they were cut from."""
    rows = [f for f in frames if len(f)] or frames[:1]
    frame = pd.concat(rows) if len(rows) > 1 else rows[0]
    pos = order.get_indexer(frame.index)
    return frame.iloc[np.argsort(pos, kind="stable")]


def merge_checks(checks: list[CheckResult]) -> CheckResult:
    """One hop's checks over its partitions as one: rows and rejections added up, an expectation
    successful where it succeeded in every partition."""
    rejected = [c.rejected for c in checks if len(c.rejected)]
    expectations: list[dict] = []
    for group in zip(*[c.expectations for c in checks if c.expectations]):
        e = dict(group[0])
        e["success"] = all(g["success"] for g in group)
        e["unexpected_count"] = sum(g["unexpected_count"] for g in group)
        expectations.append(e)
    return CheckResult(hop=checks[0].hop, rows=sum(c.rows for c in checks),
                       rejected=pd.concat(rejected) if rejected else checks[0].rejected, expectations=expectations)


def _merge_hop(results: list[hops.HopResult], order: pd.Index, policy: Policy) -> hops.HopResult:
    frame = _in_order([r.frame for r in results], order)
    quarantine = [r.quarantine for r in results if not r.quarantine.empty]
    checks = []
    for i in range(len(results[0].checks)):
        check = merge_checks([r.checks[i] for r in results])
        enforce_threshold(check, policy.data_quality.max_failure_share)  # over the whole run, as in one process
        checks.append(check)
    q = pd.concat(quarantine, ignore_index=True) if quarantine else results[0].quarantine
    return hops.HopResult(frame, q, checks)


def merge(results: list[dict], aged: pd.DataFrame, policy: Policy):
    """(enriched, scored, planned, actions, cohort) for the whole run from its partitions' results:
    the frames in the order of `aged`, the actions partition by partition (each customer's touches
    in the order one process gives them), the cohort the union of the partitions' (None where no
    partition has one: no pilot, or a dry run)."""
    results = sorted(results, key=lambda r: r["index"])
    order = aged.index
    enriched = _merge_hop([r["enriched"] for r in results], order, policy)
    scored = _merge_hop([r["scored"] for r in results], order, policy)
    planned = _merge_hop([r["planned"] for r in results], order, policy)
    acts = [r["actions"] for r in results if len(r["actions"])] or [results[0]["actions"]]
    actions = pd.concat(acts, ignore_index=True) if len(acts) > 1 else acts[0].reset_index(drop=True)
    cohorts = [r["cohort"] for r in results if r["cohort"] is not None]
    cohort = set().union(*cohorts) if cohorts else None
    return enriched, scored, planned, actions, cohort


# ---- the lanes' messages, rendered by partition ----------------------------------------------------
LANES = ("current", "early", "late", "critical")  # flows/lanes.py, in its order


def lane_batches(actions: pd.DataFrame, cohort: set[str] | None, mode: str) -> list[tuple[str, str, pd.DataFrame]]:
    """(lane, mode, actions) as flows/lanes.py hands them to queue_touches: each lane's actions,
    the pilot's customers in the run's mode and everyone else's in dry-run."""
    out = []
    for lane in LANES:
        mine = actions[actions["lane"] == lane]
        outside = mine[~mine["customer_id"].astype(str).isin(cohort)] if cohort is not None else mine.iloc[0:0]
        mine = mine.drop(outside.index)
        for part, how in ((mine, mode), (outside, "dry-run")):
            if not part.empty:
                out.append((lane, how, part))
    return out


def split_actions(actions: pd.DataFrame, invoices: pd.DataFrame, n: int) -> list[dict]:
    """Today's touches and the planned invoices cut by customer as split() cuts the run."""
    a, i = partition_of(actions["customer_id"], n), partition_of(invoices["customer_id"], n)
    return [{"index": k, "actions": actions[a == k], "invoices": invoices[i == k]} for k in range(n)]


def render_partition(part: dict, *, directory, cohort: set[str] | None, mode: str, run_id: str, as_of: dt.date,
                     policy: Policy) -> dict:
    """The outbox rows of one partition's touches, lane by lane, as queue_touches renders them
    (the guardrails check each message against the whole run's `directory`)."""
    rendered = {(lane, how): touches_mod.outbox_rows(batch, part["invoices"], mode=how, run_id=run_id, as_of=as_of,
                                                      policy=policy, directory=directory)
                for lane, how, batch in lane_batches(part["actions"], cohort, mode)}
    return {"index": part["index"], "rendered": rendered}


def merge_rendered(results: list[dict]) -> dict[tuple[str, str], pd.DataFrame]:
    """(lane, mode) -> the outbox rows of every partition, partition by partition."""
    out: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for r in sorted(results, key=lambda r: r["index"]):
        for key, rows in r["rendered"].items():
            if not rows.empty:
                out.setdefault(key, []).append(rows)
    return {k: pd.concat(v, ignore_index=True) if len(v) > 1 else v[0] for k, v in out.items()}
