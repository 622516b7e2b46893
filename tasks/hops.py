"""One pure function per hop of the daily flow (DESIGN.md, Data flow). No Prefect import here:
``flows/prefect_tasks.py`` wraps each in a @task, and tests call them directly.

Every hop hands on a frame that passed its expectation suite; the rows a suite rejects become
quarantine rows with the hop and reason, and the run goes on unless the hop's rejected share passes
the policy's threshold.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import pandas as pd

from arflow.money import exact_total, known_currencies
from arflow.policy import Policy
from tasks import credits as credits_mod
from tasks import enrich as enrich_mod
from tasks import extract, plan as plan_mod, reconcile as rec_mod, schedule as schedule_mod, score as score_mod
from tasks.quality import CheckResult, enforce_threshold, run_suite

QUARANTINE_COLUMNS = ["hop", "entity", "record_id", "invoice_id", "customer_id", "source_row", "reason", "detail",
                      "raw"]


@dataclass
class Inputs:
    """What the sources and the ledger hand the run, read once at its start."""

    source: str
    invoices: pd.DataFrame
    customers: pd.DataFrame
    payments: pd.DataFrame | None
    aging_report: pd.DataFrame | None
    reflected_payment_ids: set[str]
    stops: dict[str, pd.DataFrame]
    history: pd.DataFrame
    applied: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    settled: pd.DataFrame | None = None   # invoices the billing system settled itself (the checkpoint's)
    credit_notes: pd.DataFrame | None = None      # credit_notes.csv's rows (tasks/credits.py)
    payment_schedule: pd.DataFrame | None = None  # payment_schedule.csv's rows (tasks/schedule.py)
    as_of: dt.date | None = None                  # the run's day (the reconcile hop ages by invoice date from it)
    invoice_pdf: object = None                    # the billing system's reader of an invoice's PDF (invoice_id -> bytes), if it has one


@dataclass
class HopResult:
    frame: pd.DataFrame
    quarantine: pd.DataFrame
    checks: list[CheckResult]
    llm: dict | None = None                               # score: the model's counts (None: rules only)
    llm_cache: list[dict] = field(default_factory=list)   # score: the model's new answers, for the ledger


def quarantine_rows(rejected: pd.DataFrame, frame: pd.DataFrame, raw: pd.DataFrame | None, *, hop: str,
                    entity: str, id_column: str) -> pd.DataFrame:
    if rejected.empty:
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    rows = frame.loc[rejected.index]
    source = raw.loc[rejected.index] if raw is not None else rows
    raw_json = [json.dumps({k: (None if pd.isna(v) else str(v)) for k, v in r.items()})
                for r in source.drop(columns=["source_row"], errors="ignore").to_dict("records")]
    return pd.DataFrame({
        "hop": hop, "entity": entity,
        "record_id": rows[id_column].astype(object).where(rows[id_column].notna(), None).to_numpy(),
        "invoice_id": rows["invoice_id"].to_numpy() if "invoice_id" in rows else None,
        "customer_id": rows["customer_id"].to_numpy() if "customer_id" in rows else None,
        "source_row": rows["source_row"].to_numpy() if "source_row" in rows else None,
        "reason": rejected["reason"].to_numpy(), "detail": rejected["detail"].to_numpy(), "raw": raw_json,
    })


def _checked(frame: pd.DataFrame, hop: str, policy: Policy, raw: pd.DataFrame | None = None, *,
             entity: str = "invoice", id_column: str = "invoice_id",
             reason_prefix: str = "") -> tuple[pd.DataFrame, pd.DataFrame, CheckResult]:
    check = run_suite(frame, hop)
    enforce_threshold(check, policy.data_quality.max_failure_share)
    rejected = check.rejected
    if reason_prefix and not rejected.empty:
        rejected = rejected.assign(reason=reason_prefix + rejected["reason"])
    q = quarantine_rows(rejected, frame, raw, hop=hop, entity=entity, id_column=id_column)
    return frame.drop(index=check.rejected.index), q, check


def extract_aging(inputs: Inputs, as_of: dt.date, policy: Policy) -> tuple[HopResult, pd.DataFrame]:
    """Parse and check customers and open invoices, age the good ones. Returns the invoice hop
    result and the good customers."""
    customers = extract.parse_customers(inputs.customers, policy)
    good_customers, cq, ccheck = _checked(customers, "extract_customers", policy, inputs.customers,
                                          entity="customer", id_column="customer_id")
    invoices = extract.parse_invoices(inputs.invoices)
    notes, nq = credits_mod.parse(inputs.credit_notes)
    given = inputs.invoices["credited"].astype(str).str.strip() != "" if "credited" in inputs.invoices else None
    from_notes = invoices["invoice_id"].map(credits_mod.credited(notes)).fillna(0).astype("int64")
    invoices["credited_minor"] = invoices["credited_minor"].where(given, from_notes) if given is not None \
        else from_notes.astype("Int64")
    invoices["balance_and_credited_minor"] = invoices["balance_minor"] + invoices["credited_minor"]
    # Membership as boolean columns: the suite then holds small literal sets (GX copies its
    # configuration often, and a value set of every customer id made that the slowest step).
    bad_customer_ids = set(cq["record_id"].dropna()) - set(good_customers["customer_id"].dropna())
    invoices["customer_record_ok"] = ~invoices["customer_id"].isin(bad_customer_ids)
    invoices["customer_known"] = invoices["customer_id"].isin(set(good_customers["customer_id"].dropna()))
    invoices["currency_known"] = invoices["currency"].isin(known_currencies())
    good, iq, icheck = _checked(invoices, "extract_aging", policy, inputs.invoices)
    for column in ("amount_minor", "balance_minor"):  # every later int64 total of these is then exact
        exact_total(good[column], what=f"open invoices' {column.removesuffix('_minor')}s")
    good = good.assign(effective_balance_minor=extract.effective_balance(good, inputs.applied,
                                                                         inputs.reflected_payment_ids))
    # Instalments: the oldest instalment with something left gives the due date the invoice is aged
    # and chased by, for what is due (tasks/schedule.py); a schedule that does not add up quarantines.
    instalments, bad_schedule = schedule_mod.parse(inputs.payment_schedule, good)
    sq = pd.DataFrame(columns=QUARANTINE_COLUMNS)
    if len(bad_schedule):
        rejected = pd.DataFrame({"reason": bad_schedule, "detail": "payment_schedule.csv: " + bad_schedule})
        sq = quarantine_rows(rejected, good, inputs.invoices, hop="extract_aging", entity="invoice",
                             id_column="invoice_id")
        good = good.drop(index=bad_schedule.index)
    split = schedule_mod.allocate(good, instalments, as_of)
    good["schedule"] = None
    good["amount_due_minor"] = good["effective_balance_minor"]
    if not split.empty:
        good.loc[split.index, "due_date"] = split["due_date"]
        good.loc[split.index, "amount_due_minor"] = split["amount_due_minor"].astype("int64")
        good["schedule"] = good["schedule"].astype(object)
        good.loc[split.index, "schedule"] = split["schedule"]
    aged = extract.age(good, as_of, policy)
    # Credit a customer holds that no invoice has taken: shown with their invoices, and it holds
    # chasing the ones it could cover until a person applies it (a decision, tasks/plan.py).
    free = credits_mod.unallocated(notes, as_of)
    aged = aged.join(credits_mod.customer_credit(aged, free))
    kq = _credit_quarantine(nq)
    quarantine = pd.concat([q for q in (cq, iq, sq, kq) if not q.empty], ignore_index=True) \
        if len(cq) + len(iq) + len(sq) + len(kq) else pd.DataFrame(columns=QUARANTINE_COLUMNS)
    return HopResult(aged, quarantine, [ccheck, icheck]), good_customers


def _credit_quarantine(nq: pd.DataFrame) -> pd.DataFrame:
    if nq.empty:
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    return pd.DataFrame({"hop": "extract_aging", "entity": "credit_note", "record_id": nq["record_id"].to_numpy(),
                         "invoice_id": None, "customer_id": nq["customer_id"].to_numpy(),
                         "source_row": nq["source_row"].to_numpy(), "reason": nq["reason"].to_numpy(),
                         "detail": None, "raw": [json.dumps({k: str(v) for k, v in r.items()}) for r in nq["raw"]]})


def report_credits(aged: pd.DataFrame, inputs: Inputs) -> pd.DataFrame:
    """What a books' report that nets credits takes off each customer: their credit notes no
    invoice has taken and the cash the ledger holds unapplied (customer_id, currency, amount_minor)."""
    parts = []
    free = credits_mod.unallocated(credits_mod.parse(inputs.credit_notes)[0], inputs.as_of) \
        if inputs.as_of is not None else pd.DataFrame()
    if not free.empty:
        parts.append(free.rename(columns={"unallocated_minor": "amount_minor"})[["customer_id", "currency",
                                                                               "amount_minor"]])
    cash = (inputs.stops or {}).get("unapplied_cash")
    if cash is not None and not cash.empty:
        parts.append(cash[["customer_id", "currency", "amount_minor"]])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["customer_id", "currency",
                                                                                   "amount_minor"])


def reconcile_aging(aged: pd.DataFrame, inputs: Inputs, policy: Policy) -> tuple[rec_mod.Reconciliation, HopResult]:
    tolerance = policy.reconciliation.tolerance
    basis = policy.reconciliation.report_basis
    credits = report_credits(aged, inputs) if policy.reconciliation.report_nets_credits else None
    if inputs.aging_report is None:
        return rec_mod.reconcile(aged, None, tolerance=tolerance, basis=basis, credits=credits,
                                 as_of=inputs.as_of), HopResult(
            aged, pd.DataFrame(columns=QUARANTINE_COLUMNS), [])
    parsed = rec_mod.parse_report(inputs.aging_report, enrich_mod.customer_currency(aged), policy.reporting_currency)
    check = run_suite(parsed, "reconcile")  # report rows: a bad one holds its customer, it never fails the run
    q = quarantine_rows(check.rejected, parsed, inputs.aging_report, hop="reconcile", entity="aging_report",
                        id_column="customer_id")
    result = rec_mod.reconcile(aged, parsed, tolerance=tolerance, rejected_report_rows=check.rejected.index,
                               basis=basis, credits=credits, as_of=inputs.as_of)
    return result, HopResult(aged, q, [check])


def enrich_context(aged: pd.DataFrame, customers: pd.DataFrame, inputs: Inputs, as_of: dt.date,
                   policy: Policy) -> HopResult:
    return enrich_frame(aged, customers, inputs.stops, inputs.history, as_of, policy)


def enrich_frame(aged: pd.DataFrame, customers: pd.DataFrame, stops: dict[str, pd.DataFrame],
                 history: pd.DataFrame | None, as_of: dt.date, policy: Policy, late_model="fit") -> HopResult:
    """enrich_context from the frames themselves (a partition of the run: tasks/partitions.py, with
    the late-payment model fitted already on the whole history)."""
    enriched = enrich_mod.enrich(aged, customers, stops, history, as_of, policy, late_model=late_model)
    good, q, check = _checked(enriched, "enrich_context", policy, reason_prefix="enrich_context:")
    return HopResult(good, q, [check])


def score(enriched: pd.DataFrame, policy: Policy, *, llm=None, as_of: dt.date | None = None,
          cache: pd.DataFrame | None = None, context: pd.DataFrame | None = None, run_id: str | None = None
          ) -> HopResult:
    """The rules score every invoice; with `llm` (connectors.llm.Claude) the model then scores the
    invoices it may (tasks.ai_score); its counts and new answers ride on the result."""
    scored = score_mod.score(enriched, policy)
    new_cache, stats = [], None
    if llm is not None:
        from tasks import ai_score

        scored, new_cache, s = ai_score.model_score(scored, policy, llm, as_of=as_of, cache=cache, context=context,
                                                    run_id=run_id)
        stats = s.as_dict()
    good, q, check = _checked(scored, "score", policy, reason_prefix="score:")
    return HopResult(good, q, [check], llm=stats, llm_cache=new_cache)


def plan_actions(scored: pd.DataFrame, as_of: dt.date, policy: Policy, *, mismatched: set[str],
                 done_keys: set[str] | None = None, touches: pd.DataFrame | None = None,
                 installments: pd.DataFrame | None = None) -> tuple[HopResult, pd.DataFrame]:
    p = plan_mod.plan(scored, as_of, policy, mismatched_customers=mismatched, done_keys=done_keys, touches=touches,
                      installments=installments)
    planned = scored.join(p.outcomes)
    good, q, check = _checked(planned, "plan_actions", policy, reason_prefix="plan_actions:")
    actions = p.actions[p.actions["row"].isin(good.index)]
    return HopResult(good, q, [check]), actions
