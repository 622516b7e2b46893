"""Delivery: the live outbox's queued touches leave, exactly once.

For each lane, right before sending: verify every queued touch at the source of truth (still open,
still owed, no dispute, opt-out, pause, promise, plan or write-off since it was planned) and skip
the changed ones with the reason; then, per message, take its rows (queued -> sending, one run
only), send through its channel, and record sent / failed / queued-for-retry. A run that stops
between taking and recording leaves the rows `sending`: the next run turns them into a decision
(delivery in doubt) and never resends them on its own.

Channels: email (SMTP), slack (incoming webhook; an owner task where none is configured), crm_task
(an owner task), billing (the due-date auto-charge), decision (what a person approved: a service
pause handed to finance, a payment plan, a write-off).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from arflow import businessdays as bd
from arflow.money import format_minor
from arflow.policy import Policy
from connectors.messaging import SendError, compose, split_recipients
from tasks import extract
from tasks.decisions import approval_changes, decision_rows
from tasks.guardrails import Directory
from tasks.touches import check_rendered, message_envelope, remittance_of, render, render_message

@dataclass
class Channels:
    mailer: object | None = None      # connectors.messaging.SmtpMailer
    slack: object | None = None       # connectors.messaging.SlackWebhook
    billing: object | None = None     # connectors.billing.DemoBilling, connectors.stripe_billing.StripeBilling
    crm: object | None = None         # connectors.salesforce.SalesforceCrm: owner tasks become CRM Tasks
    mail_from: str = "accounts-receivable@localhost"


@dataclass
class Counts:
    sent: int = 0
    failed: int = 0
    retry: int = 0
    skipped_at_send: dict = field(default_factory=dict)
    charges: int = 0
    charges_failed: int = 0
    charge_retries: int = 0         # of them, retries of a refused auto-charge (policy.auto_charge_retries)
    charge_retries_failed: int = 0
    finance_alerts: int = 0
    decisions_opened: int = 0
    carried_out: int = 0
    digest_items: int = 0

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped_at_send[reason] = self.skipped_at_send.get(reason, 0) + n

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Context:
    ledger: object
    channels: Channels
    policy: Policy
    run_id: str
    as_of: dt.date
    mode: str
    data_dir: Path
    verify: object            # callable(rows) -> pd.Series of skip reasons (None: still good)
    quarter_end: bool = False
    llm: object = None        # connectors.llm.Claude where the model is on (personalization)
    cohort: set | None = None # the pilot's customers (tasks/pilot.py): only theirs are sent; None: everyone's


# ---- verify at the source ------------------------------------------------------------------------
def source_state(source, ledger, as_of: dt.date, policy: Policy, only: set[str] | None = None) -> pd.DataFrame:
    """The source of truth now, per open invoice: effective balance and the stop flags. Read
    fresh (not the run's extract), right before the sends. `only`: the invoices about to be sent
    (the others are read but not parsed)."""
    from tasks.enrich import STOP_FLAGS, stop_flags

    fresh = only is not None and hasattr(source, "fresh_invoices")  # a connected system: ask for these alone
    raw = source.fresh_invoices(only) if fresh else source.invoices()
    if only is not None:
        raw = raw[raw["invoice_id"].isin(only)]
    inv = extract.parse_invoices(raw)
    inv = inv[inv["invoice_id"].notna() & inv["balance_minor"].notna()].drop_duplicates("invoice_id")
    if hasattr(source, "credit_notes") and not ("credited" in raw and (raw["credited"].astype(str) != "").any()):
        from tasks import credits  # what the source's credit notes took off: not a payment arriving

        taken = credits.credited(credits.parse(source.credit_notes())[0])
        inv["credited_minor"] = inv["invoice_id"].map(taken).fillna(0).astype("int64")
    applied = ledger.applied_payments(as_of, invoice_ids=set(inv["invoice_id"]) if only is not None else None)
    inv["effective_balance_minor"] = extract.effective_balance(inv, applied, source.reflected_payment_ids())
    people = source.fresh_customers(set(raw["customer_id"])) if fresh else source.customers()
    if only is not None:
        people = people[people["customer_id"].isin(set(raw["customer_id"]))]
    customers = extract.customer_holds(people).dropna(subset=["customer_id"])
    customers = customers.drop_duplicates("customer_id").set_index("customer_id")
    known = inv.join(customers, on="customer_id", how="inner")  # an invoice whose customer is gone: not open
    flags = stop_flags(known, ledger.stop_records(as_of), as_of)
    state = known[["invoice_id", "effective_balance_minor"]].join(flags[list(STOP_FLAGS)])
    return state.set_index("invoice_id")


def verify_rows(rows: pd.DataFrame, state: pd.DataFrame) -> pd.Series:
    """The reason each queued row may no longer go (None: it may)."""
    reasons = []
    now = state.to_dict("index")
    for r in rows[["lane", "invoice_id", "channel", "step"]].itertuples():
        s = now.get(r.invoice_id)
        if r.lane == "paid" or s is None:  # receipts, and invoices that left the source
            reasons.append(None if r.lane == "paid" else "not_open_at_source")
            continue
        if int(s["effective_balance_minor"]) <= 0:
            reasons.append("paid")
        elif bool(s["open_dispute"]):
            reasons.append("dispute")
        elif bool(s["opt_out"]) and r.channel == "email":
            reasons.append("opt_out")
        elif bool(s["paused"]) and r.channel in ("email", "billing"):
            reasons.append("paused")
        elif bool(s.get("question", False)) and r.channel in ("email", "billing"):
            reasons.append("question")
        elif bool(s["promise_to_pay"]) and r.channel in ("email", "billing"):
            reasons.append("promise_to_pay")
        elif bool(s["payment_plan"]) and r.channel in ("email", "billing") and "installment" not in r.step \
                and r.step != "payment_plan_proposal":
            reasons.append("payment_plan")
        elif bool(s["written_off"]):
            reasons.append("written_off")
        else:
            reasons.append(None)
    return pd.Series(reasons, index=rows.index, dtype=object)


# ---- sending -------------------------------------------------------------------------------------
def deliver_lane(ctx: Context, lane: str) -> dict:
    counts = Counts()
    if ctx.mode == "dry-run":
        return counts.as_dict()
    rows = ctx.ledger.sendable(lane)
    if ctx.cohort is not None and not rows.empty:  # the pilot: nobody outside it is sent anything
        rows = rows[rows["customer_id"].astype(str).isin(ctx.cohort)]
    if not rows.empty:
        _deliver(ctx, rows, counts)
    return counts.as_dict()


def _deliver(ctx: Context, rows: pd.DataFrame, counts: Counts) -> None:
    reasons = ctx.verify(rows)
    skip = reasons.notna()
    for reason, grp in rows[skip].groupby(reasons[skip]):
        n = ctx.ledger.mark(grp["id"].tolist(), "skipped", reason=f"changed at source: {reason}", only_from=("queued",))
        counts.skip(str(reason), n)
    keep = rows[~skip]
    for key, grp in keep.groupby("message_key", sort=False):
        ids = ctx.ledger.claim(str(key), grp["id"].tolist(), ctx.run_id)
        if not ids:
            continue  # another run took it first
        grp = grp[grp["id"].isin(ids)]
        _send_message(ctx, str(key), grp, rows_planned=int((rows["message_key"] == key).sum()), counts=counts)


def _send_message(ctx: Context, key: str, grp: pd.DataFrame, rows_planned: int, counts: Counts) -> None:
    first = grp.iloc[0]
    channel = first["channel"]
    subject, body = first["subject"], first["body"]
    ids = grp["id"].tolist()
    if rows_planned > len(grp) and channel == "email" and isinstance(first["context"], str):
        # Part of the message changed at the source: the rest goes out, rendered again without it.
        if str(first["closed_reason"] or "").startswith("approved with edits"):
            ctx.ledger.mark(ids, "skipped", reason="changed at source after the text was edited")
            counts.skip("changed_after_edit", len(ids))
            return
        items = [json.loads(c) for c in grp["context"]]
        subject, body, mctx = render_message("email", items, "Accounts Receivable")
        found = check_rendered(subject, body, mctx, first["customer_id"], Directory({}, {}))
        if found:
            reason = "guardrail: " + ",".join(found)
            ctx.ledger.mark(ids, "blocked", reason=reason, subject=subject, body=body)
            held = grp.assign(status="blocked", closed_reason=reason, subject=subject, body=body)
            counts.decisions_opened += ctx.ledger.open_blocked_decisions(
                decision_rows(held, ctx.ledger.touch_history("live", set(grp["invoice_id"])), ctx.run_id, ctx.as_of,
                              ctx.channels.mail_from, ctx.policy.delivery.reply_to), ctx.run_id)
            return
    if channel == "email" and isinstance(first["context"], str):
        approved = ctx.ledger.approved_decision(key)
        if approved is not None:  # a person approved this message: what leaves is what they saw
            env = message_envelope(grp, ctx.channels.mail_from, ctx.policy.delivery.reply_to)
            changes = approval_changes(approved, env, subject, body)
            if changes:
                ctx.ledger.reopen_decision(approved["id"], ids, changes, envelope=env, subject=subject, body=body,
                                           on=ctx.as_of, run_id=ctx.run_id)
                counts.skip("changed_since_approval", len(ids))
                return
    try:
        result = _send(ctx, channel, key, grp, subject, body, counts)
    except _AlreadyRecorded:
        return
    except SendError as exc:
        attempts = int(grp["attempts"].max()) + 1
        if exc.transient and attempts < ctx.policy.delivery.max_send_attempts:
            ctx.ledger.mark(ids, "queued", reason=f"retry: {exc}")
            counts.retry += 1
        else:
            ctx.ledger.mark(ids, "failed", reason=str(exc))
            counts.failed += 1
            if first["step"] == "payment_failed_notice":
                _finance_alert(ctx, first, f"{exc}", counts)
        return
    ctx.ledger.mark(ids, "sent", reason=result, delivered_on=ctx.as_of, subject=subject, body=body)
    counts.sent += 1
    ctx.ledger.audit("arflow", f"outbox.{channel}.sent", "message", key,
                     {"run": ctx.run_id, "invoices": grp["invoice_id"].tolist(), "result": result})


def _send(ctx: Context, channel: str, key: str, grp: pd.DataFrame, subject: str, body: str,
          counts: Counts) -> str | None:
    first = grp.iloc[0]
    if channel == "email":
        if ctx.channels.mailer is None:
            raise SendError("no SMTP server configured (ARFLOW_SMTP_HOST)", transient=False)
        try:
            env = message_envelope(grp, ctx.channels.mail_from, ctx.policy.delivery.reply_to)
            if not env["to"]:
                raise SendError("no e-mail address for the recipient", transient=False)
            msg = compose(sender=env["from"], to=env["to"], cc=env["cc"], subject=subject, body=body, key=key,
                          sender_on_behalf=env["sender"], reply_to=env["reply_to"])
        except SendError:
            raise
        except (ValueError, TypeError, UnicodeError) as exc:  # a header the email package refuses: this message fails
            raise SendError(f"the message could not be composed: {exc.__class__.__name__}: {exc}",
                            transient=False) from None
        for path in env["attachments"]:
            attach_file(msg, path)   # the month's statement of account (policy.statements)
        ctx.channels.mailer.send(msg)
        return None
    if channel in ("slack", "crm_task"):
        owner = split_recipients(str(first["recipients"]))[0]
        owner = owner[0] if owner else ctx.policy.delivery.finance_team
        task = {"task_key": key, "owner": owner, "customer_id": first["customer_id"],
                "invoice_ids": ",".join(grp["invoice_id"]), "kind": "escalation", "subject": subject, "body": body,
                "created_on": ctx.as_of, "status": "open"}
        if ctx.quarter_end:
            task["kind"] = "digest_item"  # batched into the owner's digest at the end of the run
            ctx.ledger.add_owner_task(task)
            counts.digest_items += 1
            return "in the owner's quarter-end digest"
        if channel == "slack" and ctx.channels.slack is not None:
            ctx.channels.slack.send(f"*{subject}*\n{body}")
            return "posted to Slack"
        if ctx.channels.crm is not None:  # the owner's task in the CRM, on the account (once per key)
            from connectors.http import ConnectorError

            try:
                crm_id = ctx.channels.crm.create_task(key=key, owner_email=owner, customer_id=str(first["customer_id"]),
                                                      subject=subject, body=body, due=ctx.as_of)
            except ConnectorError as exc:  # the outbox tries again next run; the key keeps it to one Task
                raise SendError(str(exc), transient=True) from None
            ctx.ledger.add_owner_task(task)
            return f"{ctx.channels.crm.name} task {crm_id}"
        ctx.ledger.add_owner_task(task)
        return "owner task" if channel == "crm_task" else "owner task (no Slack webhook configured)"
    if channel == "billing":
        return _charge(ctx, first, counts)
    if channel == "decision":
        return _carry_out(ctx, key, grp, counts)
    raise SendError(f"unknown channel {channel!r}", transient=False)


def attach_file(msg, path: str) -> None:
    """Attach a file the message carries (the statement of account, PDF or HTML; an invoice's PDF)
    to the message. One that is gone is a send error (the reminder never goes without what the
    policy promised and the approver saw), and so is an invoice PDF whose bytes are no longer the
    ones its path names (changed after it was approved: tasks.documents)."""
    from pathlib import Path

    from tasks.documents import verify

    f = Path(path)
    if not f.is_file():
        raise SendError(f"the file to attach is missing: {f.name}", transient=False)
    if f.suffix != ".pdf":
        msg.add_attachment(f.read_text(encoding="utf-8"), subtype="html", filename=f.name)
        return
    data = f.read_bytes()
    if not verify(f, data):
        raise SendError(f"{f.name} changed after it was queued and approved: not sent", transient=False)
    msg.add_attachment(data, maintype="application", subtype="pdf", filename=f.name)


def _charge(ctx: Context, row, counts: Counts) -> str:
    billing = ctx.channels.billing
    if billing is None:
        raise SendError("no billing connector for this source: auto-charge not attempted", transient=False)
    c = json.loads(row["context"])
    result = billing.charge(invoice_id=row["invoice_id"], invoice_number=c["invoice_number"],
                            customer_id=row["customer_id"], amount=c["amount"].replace(",", ""),
                            currency=c["currency"], idempotency_key=row["idempotency_key"], on=ctx.as_of)
    counts.charges += 1
    retry = str(row["step"]).startswith("auto_charge_retry_")
    counts.charge_retries += retry
    if result.ok:
        return f"charged {result.charge_id}"
    counts.charges_failed += 1
    if retry:  # the customer was told at the first refusal; the next retry, or the reminders, follow
        counts.charge_retries_failed += 1
        ctx.ledger.mark([int(row["id"])], "failed", reason=f"charge_failed: {result.error}")
        ctx.ledger.audit("arflow", "outbox.billing.retry_failed", "invoice", row["invoice_id"],
                         {"run": ctx.run_id, "step": row["step"], "error": result.error})
        raise _AlreadyRecorded()
    # Never silent: the customer hears the same run, the invoice joins the early lane flagged
    # (enrich reads this failed row), and finance hears if that message cannot go.
    ctx.ledger.mark([int(row["id"])], "failed", reason=f"charge_failed: {result.error}")
    _payment_failed_notice(ctx, row, c, result.error, counts)
    raise _AlreadyRecorded()


class _AlreadyRecorded(SendError):
    def __init__(self):
        super().__init__("recorded", transient=False)


def _queue_email(ctx: Context, row, c: dict, *, key: str, step: str, lane: str, subject: str, body: str,
                 context: dict, blocked: list[str] | None = None) -> int:
    """Queue one e-mail this delivery creates itself (a payment-failed notice, a plan's proposal)
    the way queue_touches queues the planned ones: under its own key, from the owner where the
    policy says so, and with its decision in the same transaction where a person approves it
    first (draft mode). Returns how many decisions it opened."""
    from tasks.touches import initial_status, namespace

    status = "blocked" if blocked else initial_status(ctx.mode, False)
    frame = pd.DataFrame([{
        "idempotency_key": key, "mode": namespace(ctx.mode), "run_id": ctx.run_id, "as_of": ctx.as_of,
        "invoice_id": row["invoice_id"], "customer_id": row["customer_id"], "lane": lane, "step": step,
        "channel": "email", "tone": "friendly", "recipients": c.get("billing_email") or "", "subject": subject,
        "body": body, "needs_approval": False, "status": status,
        "closed_reason": ("guardrail: " + ",".join(blocked)) if blocked else None, "message_key": key,
        "context": json.dumps(context, default=str), "language": c.get("language"),
        "sender": c.get("owner_email") if ctx.policy.delivery.sender == "owner" else None}])
    person = status == "awaiting_decision" or (status == "blocked" and ctx.mode != "dry-run")
    decisions = decision_rows(frame, pd.DataFrame(), ctx.run_id, ctx.as_of, ctx.channels.mail_from,
                              ctx.policy.delivery.reply_to) if person else []
    return ctx.ledger.queue_touches(frame, decisions)[1]


def _payment_failed_notice(ctx: Context, row, c: dict, error: str, counts: Counts) -> None:
    recipients = c.get("billing_email") or ""
    item = {**c, "step": "payment_failed_notice", "step_day": 0, "tone": "friendly", "payment_failed": True,
            "needs_approval": False, "recipients": recipients}
    subject, body, mctx = render_message("email", [item], "Accounts Receivable")
    key = f"{row['invoice_id']}:payment_failed_notice:email"
    found = check_rendered(subject, body, mctx, row["customer_id"], Directory({}, {}))
    counts.decisions_opened += _queue_email(ctx, row, c, key=key, step="payment_failed_notice", lane="early",
                                            subject=subject, body=body, context=item, blocked=found)
    if found or not recipients:
        _finance_alert(ctx, row, "blocked by the guardrails" if found else "no billing contact address", counts,
                       charge_error=error)
        return
    _deliver_new(ctx, key, counts)  # sent now in send mode; in draft mode it waits for its decision


def _finance_alert(ctx: Context, row, send_error: str, counts: Counts, charge_error: str | None = None) -> None:
    c = json.loads(row["context"]) if isinstance(row.get("context"), str) else {}
    if charge_error is None:
        charge_error = ctx.ledger.last_charge_error(row["invoice_id"]) or "charge failed"
    subject, body = render("finance_alert.j2", {"customer_name": c.get("customer_name", row["customer_id"]),
                                                "invoice_number": c.get("invoice_number", row["invoice_id"]),
                                                "amount": c.get("amount", "?"), "currency": c.get("currency", ""),
                                                "charge_error": charge_error, "send_error": send_error})
    task = {"task_key": f"{row['invoice_id']}:payment_failed_alert", "owner": ctx.policy.delivery.finance_team,
            "customer_id": row["customer_id"], "invoice_ids": row["invoice_id"], "kind": "alert", "subject": subject,
            "body": body, "created_on": ctx.as_of, "status": "open"}
    if ctx.ledger.add_owner_task(task):
        counts.finance_alerts += 1
        if ctx.channels.slack is not None:
            try:
                ctx.channels.slack.send(f"*{subject}*\n{body}")
            except SendError:
                pass  # the owner task in the ledger stands; the run's summary counts it
        ctx.ledger.audit("arflow", "finance.alerted", "invoice", row["invoice_id"], {"why": send_error})


# ---- approved decisions --------------------------------------------------------------------------
def _carry_out(ctx: Context, key: str, grp: pd.DataFrame, counts: Counts) -> str:
    """A `decision` touch a person approved: hand it to the humans who act on it, or set up the
    payment plan or the write-off chosen."""
    ledger = ctx.ledger
    decision = ledger.decision_by_key(key)
    first = grp.iloc[0]
    c = json.loads(first["context"])
    choice = decision["choice"] if decision is not None else None
    counts.carried_out += 1
    if choice == "write_off":
        result = _write_off(ctx, grp, c, decision)
    elif choice == "payment_plan":
        result = _payment_plan(ctx, first, c, decision, counts)
    else:  # service pause (and anything else approved): finance and the owner act; arflow never changes an account
        task = {"task_key": key, "owner": ctx.policy.delivery.finance_team, "cc": c.get("owner_email"),
                "customer_id": first["customer_id"], "invoice_ids": ",".join(grp["invoice_id"]), "kind": "decision",
                "subject": f"Approved: {first['step'].replace('_', ' ')} for {c['customer_name']}",
                "body": first["body"], "created_on": ctx.as_of, "status": "open"}
        ledger.add_owner_task(task)
        result = "handed to finance and the owner"
    if decision is not None:
        ledger.mark_carried_out(int(decision["id"]), ctx.as_of)
    return result


def _write_off(ctx: Context, grp: pd.DataFrame, c: dict, decision) -> str:
    from arflow.safety import csv_cell

    folder = ctx.data_dir / ctx.policy.payment_plans.collections_export_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"collections-{ctx.as_of.isoformat()}.csv"
    rows = [{"invoice_id": r.invoice_id, "customer_id": r.customer_id, "amount_minor": c["amount_minor"],
             "currency": c["currency"], "approved_on": ctx.as_of,
             "decision_id": int(decision["id"]) if decision is not None else None, "export_file": str(path)}
            for r in grp.itertuples()]
    new = ctx.ledger.record_write_offs(rows)
    if new:
        fresh = not path.exists()
        with open(path, "a", newline="") as fh:
            w = csv.writer(fh)
            if fresh:
                w.writerow(["invoice_id", "invoice_number", "customer_id", "customer_name", "amount", "currency",
                            "due_date", "days_past_due", "billing_contact", "approved_on", "decision_id"])
            for r in rows:
                if r["invoice_id"] in new:  # cells a spreadsheet would evaluate are escaped (arflow.safety)
                    w.writerow([csv_cell(v) for v in (
                        r["invoice_id"], c["invoice_number"], r["customer_id"], c["customer_name"], c["amount"],
                        c["currency"], c["due_date"], c["days_past_due"], c["contact_name"], ctx.as_of.isoformat(),
                        r["decision_id"])])
    return f"written off, exported to {path.name}"


def _payment_plan(ctx: Context, row, c: dict, decision, counts: Counts) -> str:
    pp = ctx.policy.payment_plans
    n = int(decision["installments"]) if decision is not None and pd.notna(decision["installments"]) else pp.installments
    total, cur = int(c["amount_minor"]), c["currency"]
    base, extra = divmod(total, n)
    dues = [ctx.as_of + dt.timedelta(days=pp.first_due_days + i * pp.interval_days) for i in range(n)]
    amounts = [base + (1 if i < extra else 0) for i in range(n)]
    plan_id = ctx.ledger.open_payment_plan(  # a plan missed earlier is replaced by this one
        {"customer_id": row["customer_id"], "invoice_id": row["invoice_id"], "starts_on": ctx.as_of,
         "ends_on": dues[-1], "status": "active", "balance_at_start_minor": total, "currency": cur,
         "decision_id": int(decision["id"]) if decision is not None else None},
        [{"seq": i + 1, "due_on": d, "amount_minor": a, "currency": cur} for i, (d, a) in enumerate(zip(dues, amounts))])
    item = {**c, "installments": [{"due_on": d.isoformat(), "amount": format_minor(a, cur)} for d, a in zip(dues, amounts)]}
    subject, body = render("payment_plan.j2", {**item, "sender_name": "Accounts Receivable",
                                               "remittance": remittance_of(c.get("company"), [cur])},
                           c.get("language") or "en")
    key = f"{row['invoice_id']}:payment_plan_{plan_id}:email"
    counts.decisions_opened += _queue_email(ctx, row, c, key=key, step="payment_plan_proposal", lane=row["lane"],
                                            subject=subject, body=body,
                                            context={**c, "step": "payment_plan_proposal"})
    _deliver_new(ctx, key, counts)
    return f"payment plan {plan_id}: {n} installments"


def _deliver_new(ctx: Context, key: str, counts: Counts) -> None:
    """Send a row this run just queued (the payment-failed notice, a plan's proposal) right away."""
    queued = ctx.ledger.queued_live(key)
    if not queued.empty:
        _deliver(ctx, queued, counts)


# ---- owners: quarter-end digests and unacknowledged escalations ----------------------------------
def in_quarter_end(as_of: dt.date, policy: Policy) -> bool:
    """True in the last N business days (ours) of a calendar quarter."""
    n = policy.escalations.quarter_end_business_days
    if n <= 0:
        return False
    q_end_month = ((as_of.month - 1) // 3 + 1) * 3
    last = (pd.Timestamp(as_of.year, q_end_month, 1) + pd.offsets.MonthEnd(0)).date()
    days, day = [], last
    while len(days) < n:
        if bd.company_business_day(day, policy.company_country):
            days.append(day)
        day -= dt.timedelta(days=1)
    return days[-1] <= as_of <= last


def follow_up_owners(ctx: Context) -> dict:
    """Send today's digests (one per owner, finance lead copied) and hand escalations nobody
    acknowledged in time to the finance lead."""
    ledger, policy, out = ctx.ledger, ctx.policy, {"digests": 0, "ack_timeouts": 0}
    if ctx.mode == "dry-run":
        return out
    items = ledger.digest_items(ctx.as_of)
    for owner, grp in (items.groupby("owner") if not items.empty else []):
        subject, body = render("digest.j2", {"owner": owner, "items": grp.to_dict("records"), "as_of": ctx.as_of,
                                             "ack_days": policy.escalations.ack_timeout_business_days})
        key = f"digest:{owner}:{ctx.as_of.isoformat()}"
        task = {"task_key": key, "owner": owner, "cc": policy.delivery.finance_lead, "kind": "digest",
                "invoice_ids": ",".join(grp["invoice_ids"].dropna()), "subject": subject, "body": body,
                "created_on": ctx.as_of, "status": "open"}
        if ledger.add_owner_task(task) and ctx.channels.mailer is not None:
            try:
                ctx.channels.mailer.send(compose(sender=ctx.channels.mail_from, to=[owner],
                                                 cc=[policy.delivery.finance_lead], subject=subject, body=body, key=key))
            except SendError as exc:
                ledger.audit("arflow", "digest.send_failed", "owner", owner, {"error": str(exc)})
        out["digests"] += 1
    # Escalations (single tasks and digest items) not acknowledged within N business days.
    open_tasks = ledger.unacknowledged_escalations()
    if not open_tasks.empty:
        created = pd.to_datetime(open_tasks["created_on"]).astype("datetime64[s]")
        country = pd.Series(policy.company_country, index=open_tasks.index)
        due = bd.add_business_days(created, policy.escalations.ack_timeout_business_days, country,
                                   policy.company_country)
        late = open_tasks[due <= pd.Timestamp(ctx.as_of)]
        for t in late.itertuples():
            subject, body = render("ack_timeout.j2", {"subject": t.subject, "owner": t.owner, "created_on": t.created_on,
                                                      "ack_days": policy.escalations.ack_timeout_business_days,
                                                      "body": t.body or ""})
            ledger.add_owner_task({
                "task_key": f"ack_timeout:{t.id}", "owner": policy.delivery.finance_lead, "cc": t.owner,
                "customer_id": t.customer_id, "invoice_ids": t.invoice_ids, "kind": "ack_timeout", "subject": subject,
                "body": body, "created_on": ctx.as_of, "status": "open"})
            ledger.mark_escalated(t.id, ctx.as_of)
            out["ack_timeouts"] += 1
    return out
