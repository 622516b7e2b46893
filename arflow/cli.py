"""The `arflow` command: the way in for people and scripts. It starts the same flows the
deployments run. With --json, stdout carries exactly one JSON object; everything else goes to stderr.
Exit codes: 0 done, 1 the run could not complete (unreadable source, bad policy, data quality),
2 bad arguments."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="arflow: invoice and AR follow-up automation on Prefect.")

EXIT_FAILED = 1
EXIT_USAGE = 2
SOURCE_HELP = "demo | csv:DIR | quickbooks | xero | stripe | chargebee"
CRM_HELP = "salesforce or hubspot: accounts and contacts from the CRM (default: the billing system's customers)"


class UsageError(Exception):
    pass


def _parse_date(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} must be a date as YYYY-MM-DD, got {text!r}") from None


def _quiet_env() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # the temporary server: no telemetry call (an ERROR line offline)


@app.command()
def run(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the day to run, YYYY-MM-DD (default: today in the company's timezone)"),
    source: str = typer.Option("demo", "--source", help=SOURCE_HELP),
    crm: Optional[str] = typer.Option(None, "--crm", help=CRM_HELP),
    mode: str = typer.Option("dry-run", "--mode", help="dry-run (render, write .eml files, send nothing) | draft "
                             "(every message waits for approval) | send"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
    partitions: int = typer.Option(1, "--partitions", min=1, help="N > 1: enrich, score and plan N customer "
                                   "partitions on a Dask cluster (ARFLOW_DASK_ADDRESS, else a local one; docs/scale.md)"),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="the Dask scheduler, tcp://host:8786 "
                                               "(default ARFLOW_DASK_ADDRESS)"),
) -> None:
    """Run the daily AR flow for one day."""
    day = _parse_date(as_of, "--as-of")
    source = _check_source(source, crm)
    if mode not in ("dry-run", "draft", "send"):
        raise UsageError(f"--mode must be dry-run, draft or send, got {mode!r}")
    _quiet_env()
    with contextlib.redirect_stdout(sys.stderr):
        from flows.daily_ar import daily_ar

        summary = daily_ar(as_of=day, source=source, mode=mode, partitions=partitions, dask_address=dask_address)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    else:
        from tasks.report import markdown

        sys.stdout.write(markdown(summary))


@app.command()
def checkpoint(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the day to run, YYYY-MM-DD (default: today)"),
    source: str = typer.Option("demo", "--source", help=SOURCE_HELP + " (its payments)"),
    crm: Optional[str] = typer.Option(None, "--crm", help=CRM_HELP),
    bank_file: Optional[Path] = typer.Option(None, "--bank-file", help="a bank statement: CSV or BAI2"),
    mode: str = typer.Option("dry-run", "--mode", help="dry-run (receipts recorded, not sent)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Run the payment checkpoint: apply payments, close paid invoices, queue receipts."""
    day = _parse_date(as_of, "--as-of")
    source = _check_source(source, crm)
    if bank_file is not None and not bank_file.is_file():
        raise UsageError(f"--bank-file {bank_file} is not a file")
    _quiet_env()
    with contextlib.redirect_stdout(sys.stderr):
        from flows.payment_checkpoint import payment_checkpoint

        summary = payment_checkpoint(as_of=day, source=source, bank_file=str(bank_file) if bank_file else None,
                                     mode=mode)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    else:
        for k, v in summary.items():
            sys.stdout.write(f"{k}: {v}\n")


def _check_source(source: str, crm: str | None = None) -> str:
    """The source spec the flows take: the billing source, and `+crm` where one is given."""
    from connectors.systems import BILLING_SYSTEMS, CRM_SYSTEMS, source_spec

    if not (source == "demo" or source.startswith("csv:") or source in BILLING_SYSTEMS):
        raise UsageError(f"--source must be demo, csv:DIR, quickbooks, xero, stripe or chargebee, got {source!r}")
    if source.startswith("csv:") and not Path(source[4:]).is_dir():
        raise UsageError(f"--source {source}: {source[4:]} is not a folder")
    if crm is not None and crm not in CRM_SYSTEMS:
        raise UsageError(f"--crm must be {' or '.join(CRM_SYSTEMS)}, got {crm!r}")
    return source_spec(source, crm)


@app.command("config")
def config(
    show: bool = typer.Option(True, "--show/--check", help="print every variable in effect (--check: only validate)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON list on stdout"),
) -> None:
    """The configuration in effect: every ARFLOW_* variable, its value (secrets masked), whether it
    came from the environment or is the default, and what it does. Exit 1 naming each bad value."""
    from arflow import settings as s

    rows = s.shown(s.load(), os.environ)
    if not show:
        print(f"arflow: configuration valid ({sum(r['source'] == 'environment' for r in rows)} variable(s) set)")
        return
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    width = max(len(r["variable"]) for r in rows)
    for r in rows:
        mark = "*" if r["source"] == "environment" else " "
        print(f"{mark} {r['variable']:<{width}}  {r['value'] or '-':<32}  {r['meaning']}")
    print("\n* set in the environment; the rest are defaults. Connection blocks saved in Prefect win over "
          "their system's variables (arflow check-connection SYSTEM says which was used).")


@app.command("check-connection")
def check_connection(
    system: str = typer.Argument(..., help="quickbooks | xero | salesforce | hubspot | stripe | chargebee | smtp"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Sign in to a connected system and print what arflow can see there (counts; nothing is written).
    smtp: connect, sign in (password or XOAUTH2), NOOP and QUIT; no message is sent."""
    if system not in ("quickbooks", "xero", "salesforce", "hubspot", "stripe", "chargebee", "smtp"):
        raise UsageError("check-connection takes quickbooks, xero, salesforce, hubspot, stripe, chargebee or smtp, "
                         f"got {system!r}")
    _quiet_env()
    from arflow.config import Settings
    from connectors.registry import open_source

    settings = Settings.from_env()
    with contextlib.redirect_stdout(sys.stderr):
        if system == "smtp":
            from arflow.blocks import smtp_config
            from connectors.messaging import SmtpMailer

            smtp = smtp_config()
            if smtp is None:
                raise UsageError("check-connection smtp: set ARFLOW_SMTP_HOST (or save an arflow-smtp block)")
            found = SmtpMailer(smtp).check()  # a SendError ends it as one line naming the step
        elif system in ("salesforce", "hubspot"):
            from connectors.registry import open_crm

            found = open_crm(system, as_of=dt.date.today()).check()
        else:
            found = open_source(system, data_dir=settings.data_dir, as_of=dt.date.today()).check()
    if as_json:
        sys.stdout.write(json.dumps(found, default=str) + "\n")
    else:
        sys.stdout.write("".join(f"{k}: {v}\n" for k, v in found.items()))


@app.command("stripe-webhooks")
def stripe_webhooks(
    port: int = typer.Option(8787, "--port", help="the port to listen on"),
    host: str = typer.Option("127.0.0.1", "--host", help="the address to listen on (behind your TLS proxy)"),
) -> None:
    """Receive Stripe's webhooks at POST /stripe/webhook: invoice.payment_failed and invoice.paid,
    signature-verified with ARFLOW_STRIPE_WEBHOOK_SECRET, recorded once per event id in the ledger."""
    _quiet_env()
    from arflow.blocks import connection
    from arflow.config import Settings, today_in
    from arflow.policy import load_policy
    from connectors.ledger.store import Ledger
    from connectors.stripe_billing import webhook_server

    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    secret = connection("stripe")[0].get("webhook_secret")
    if not secret:
        raise UsageError("set ARFLOW_STRIPE_WEBHOOK_SECRET (the endpoint's signing secret, whsec_...)")
    server = webhook_server(port, Ledger(settings.db_url), secret, lambda: today_in(settings.timezone or policy.timezone),
                            host=host)
    import signal

    def _stop(signum, frame):  # SIGTERM ends it as Ctrl-C does: exit handlers run, and stop a temporary Prefect server
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)  # before saying it listens: a supervisor may stop it at once
    try:
        print(f"arflow: Stripe webhooks on http://{host}:{server.server_address[1]}/stripe/webhook", file=sys.stderr)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command("chargebee-webhooks")
def chargebee_webhooks(
    port: int = typer.Option(8788, "--port", help="the port to listen on"),
    host: str = typer.Option("127.0.0.1", "--host", help="the address to listen on (behind your TLS proxy)"),
) -> None:
    """Receive Chargebee's webhooks at POST /chargebee/webhook: payment_succeeded, payment_failed and
    invoice_generated, with the basic auth of ARFLOW_CHARGEBEE_WEBHOOK_USERNAME/_PASSWORD, recorded
    once per event id in the ledger."""
    _quiet_env()
    from arflow.blocks import connection
    from arflow.config import Settings, today_in
    from arflow.policy import load_policy
    from connectors.chargebee import webhook_server
    from connectors.ledger.store import Ledger

    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    cfg = connection("chargebee")[0]
    if not cfg.get("webhook_username") or not cfg.get("webhook_password"):
        raise UsageError("set ARFLOW_CHARGEBEE_WEBHOOK_USERNAME and ARFLOW_CHARGEBEE_WEBHOOK_PASSWORD (the basic auth "
                         "configured on the webhook in Chargebee)")
    server = webhook_server(port, Ledger(settings.db_url), cfg["webhook_username"], cfg["webhook_password"],
                            lambda: today_in(settings.timezone or policy.timezone), host=host)
    print(f"arflow: Chargebee webhooks on http://{host}:{server.server_address[1]}/chargebee/webhook", file=sys.stderr)
    import signal

    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command("seed-demo")
def seed_demo(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="anchor date of the demo portfolio (default: today)"),
    seed: int = typer.Option(42, "--seed", help="random seed; the same seed and date give the same data"),
    folder: Optional[Path] = typer.Option(None, "--out", help="folder to write (default: DATA_DIR/demo)"),
) -> None:
    """Generate the demo data (CSV source + ledger records) and seed the ledger."""
    from arflow import demo
    from arflow.config import Settings, today_in
    from arflow.policy import load_policy
    from connectors.ledger.store import Ledger

    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    anchor = _parse_date(as_of, "--as-of") or today_in(settings.timezone or policy.timezone)
    out = folder or settings.data_dir / "demo"
    demo.generate(out, anchor=anchor, seed=seed)
    demo.seed_ledger(Ledger(settings.db_url), out)
    info = json.loads((out / "demo.json").read_text())
    typer.echo(f"demo data: {info['customers']} customers, {info['invoices']} invoices, anchored {anchor} -> {out}",
               err=True)


# ---- records that stop or shape outreach; each takes effect on the next run ---------------------
dispute_app = typer.Typer(help="Open or resolve a dispute on an invoice (holds all outreach on it).")
app.add_typer(dispute_app, name="dispute")
cash_app = typer.Typer(help="The checkpoint's exceptions queue of unapplied cash.")
app.add_typer(cash_app, name="cash")


def _ledger_and_today(on: str | None):
    from arflow.config import Settings, today_in
    from arflow.policy import load_policy
    from connectors.ledger.store import Ledger

    settings = Settings.from_env()
    day = _parse_date(on, "--on")
    if day is None:
        day = today_in(settings.timezone or load_policy(settings.policy_path).timezone)
    return Ledger(settings.db_url), day


RECORD_SOURCE_HELP = SOURCE_HELP + " whose customers and invoices the record is checked against (default: the " \
                                   "source of the ledger's last run, else demo)"


def _record_source(ledger, source: str | None) -> str:
    """The source a record is checked against: the one given, else the one the ledger last ran on."""
    if source is not None:
        return _check_source(source)
    return ledger.last_run_source() or "demo"


def _fold(text: str) -> str:
    """An id as the sources compare it: whitespace collapsed, case folded."""
    return " ".join(str(text).split()).casefold()


class _Known:
    """The customer and invoice ids of a source, to check a record against before it is written: a
    stop on a customer that does not exist stops nobody, and the real customer is still chased."""

    def __init__(self, ledger, source: str | None, day: dt.date):
        from arflow.config import Settings
        from connectors.registry import open_source

        self.source = _record_source(ledger, source)
        src = open_source(self.source, data_dir=Settings.from_env().data_dir, as_of=day)
        inv = src.invoices()
        self.customers = self._ids(src.customers()["customer_id"])
        self.invoice_customer = {str(i).strip(): str(c).strip() for i, c in zip(inv["invoice_id"], inv["customer_id"])}
        self.invoices = self._ids(list(self.invoice_customer))

    @staticmethod
    def _ids(values) -> dict[str, str]:
        out: dict[str, str] = {}
        for v in values:
            if isinstance(v, str) and v.strip():
                out.setdefault(_fold(v), v.strip())
        return out

    def _resolve(self, given: str, ids: dict[str, str], what: str) -> str:
        import difflib

        hit = ids.get(_fold(given))
        if hit is not None:
            return hit
        close = [ids[c] for c in difflib.get_close_matches(_fold(given), list(ids), n=3, cutoff=0.5)]
        raise UsageError(f"no {what} {given!r} in {self.source}"
                         + (f"; close: {', '.join(close)}" if close else "; nothing close"))

    def customer(self, given: str) -> str:
        return self._resolve(given, self.customers, "customer")

    def invoice(self, given: str, customer: str | None = None) -> str:
        invoice = self._resolve(given, self.invoices, "invoice")
        owner = self.invoice_customer.get(invoice)
        if customer is not None and owner != customer:
            raise UsageError(f"invoice {invoice} is customer {owner}'s, not {customer}'s")
        return invoice


def _record(ledger, kind: str, row: dict, action: str, who: str, entity_id: str) -> None:
    ledger.record_named(kind, row, action, who, entity_id)
    typer.echo(f"{action}: {entity_id}", err=True)


@dispute_app.command("open")
def dispute_open(invoice: str = typer.Argument(..., help="invoice id"),
                 customer: str = typer.Option(..., "--customer", help="customer id"),
                 reason: str = typer.Option(..., "--reason"),
                 amount: Optional[str] = typer.Option(None, "--amount", help="disputed amount, major units"),
                 currency: Optional[str] = typer.Option(None, "--currency"),
                 code: str = typer.Option("unspecified", "--code",
                                          help="reason code, one of the policy's disputes.reason_codes "
                                               "(unspecified: a decision asks for one)"),
                 lines: Optional[str] = typer.Option(None, "--lines", help="the invoice lines disputed, e.g. '2, 3'"),
                 on: Optional[str] = typer.Option(None, "--on", help="date opened (default today)"),
                 source: Optional[str] = typer.Option(None, "--source", help=RECORD_SOURCE_HELP),
                 by: str = typer.Option(os.environ.get("USER", "arflow-cli"), "--by")) -> None:
    """Open a dispute: no automated touch on this invoice until it is resolved. With --amount less
    than what is owed, only that part is held and the rest keeps its cadence."""
    from arflow.money import to_minor

    codes = _dispute_codes()
    if code not in codes:
        raise UsageError(f"--code must be one of {', '.join(codes)}")
    ledger, day = _ledger_and_today(on)
    known = _Known(ledger, source, day)
    customer = known.customer(customer)
    invoice = known.invoice(invoice, customer)
    minor = None
    if amount is not None:
        if not currency:
            raise UsageError("--amount needs --currency")
        try:
            minor = to_minor(amount, currency.upper())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    _record(ledger, "Dispute", {"invoice_id": invoice, "customer_id": customer, "opened_on": day, "reason": reason,
                        "amount_minor": minor, "currency": currency.upper() if currency else None,
                        "reason_code": code, "lines": lines},
            "dispute.opened", by, invoice)
    if code == "unspecified":
        from tasks.triage import dispute_reason_decision

        reply = {"message_id": f"cli-{day.isoformat()}", "from_address": by, "subject": reason, "body": reason}
        ledger.open_decision_once(dispute_reason_decision(invoice, customer, day, reply, codes, minor,
                                                          currency.upper() if currency else None))
        typer.echo(f"decision opened: the dispute's reason code (arflow dispute code {invoice} --code ...)", err=True)


def _dispute_codes() -> tuple[str, ...]:
    from arflow.config import Settings
    from arflow.policy import load_policy

    return load_policy(Settings.from_env().policy_path).disputes.reason_codes


@dispute_app.command("code")
def dispute_code(invoice: str = typer.Argument(..., help="invoice id"),
                 code: str = typer.Option(..., "--code", help="one of the policy's disputes.reason_codes"),
                 on: Optional[str] = typer.Option(None, "--on"),
                 by: str = typer.Option(os.environ.get("USER", "arflow-cli"), "--by")) -> None:
    """Give an open dispute its reason code; the decision that asked for it is closed."""
    codes = _dispute_codes()
    if code not in codes or code == "unspecified":
        raise UsageError(f"--code must be one of {', '.join(c for c in codes if c != 'unspecified')}")
    ledger, day = _ledger_and_today(on)
    if not ledger.code_dispute(invoice, code, by, day):
        raise UsageError(f"no open dispute on invoice {invoice}")
    typer.echo(f"dispute.coded: {invoice} {code}", err=True)


@app.command()
def answered(customer: str = typer.Argument(..., help="customer id"),
             note: str = typer.Option("", "--note", help="what was answered"),
             on: Optional[str] = typer.Option(None, "--on"),
             by: str = typer.Option(os.environ.get("USER", "arflow-cli"), "--by")) -> None:
    """A customer's question was answered: the pause it put on their reminders ends (the next run
    resumes the cadence)."""
    ledger, day = _ledger_and_today(on)
    if not ledger.answer_question(customer, by, day, note):
        raise UsageError(f"customer {customer} has no open question")
    typer.echo(f"question.answered: {customer}", err=True)


@dispute_app.command("resolve")
def dispute_resolve(invoice: str = typer.Argument(...), on: Optional[str] = typer.Option(None, "--on"),
                    note: str = typer.Option("", "--note"),
                    by: str = typer.Option(os.environ.get("USER", "arflow-cli"), "--by")) -> None:
    """Resolve the open dispute(s) on an invoice: reminders resume on the next run."""
    ledger, day = _ledger_and_today(on)
    if not ledger.resolve_dispute(invoice, by, day, note):
        raise UsageError(f"no open dispute on invoice {invoice}")
    typer.echo(f"dispute.resolved: {invoice}", err=True)


@app.command()
def promise(invoice: str = typer.Argument(...), customer: str = typer.Option(..., "--customer"),
            date: str = typer.Option(..., "--date", help="the date the customer promised to pay"),
            amount: Optional[str] = typer.Option(None, "--amount"), currency: Optional[str] = typer.Option(None, "--currency"),
            note: str = typer.Option("", "--note"), on: Optional[str] = typer.Option(None, "--on"),
            source: Optional[str] = typer.Option(None, "--source", help=RECORD_SOURCE_HELP),
            by: str = typer.Option(os.environ.get("USER", "arflow-cli"), "--by")) -> None:
    """Record a promise to pay: reminders stop until the date, and resume the business day after
    if it is broken."""
    from arflow.money import to_minor

    ledger, day = _ledger_and_today(on)
    promised = _parse_date(date, "--date")
    if promised < day:
        raise UsageError(f"--date {promised} is before the day it is recorded ({day})")
    known = _Known(ledger, source, day)
    customer = known.customer(customer)
    invoice = known.invoice(invoice, customer)
    minor = to_minor(amount, currency.upper()) if amount and currency else None
    _record(ledger, "PromiseToPay", {"invoice_id": invoice, "customer_id": customer, "recorded_on": day,
                             "promised_date": promised, "amount_minor": minor,
                             "currency": currency.upper() if currency else None, "note": note or None},
            "promise.recorded", by, invoice)


@app.command()
def pause(customer: str = typer.Argument(...), until: str = typer.Option(..., "--until"),
          reason: str = typer.Option(..., "--reason"), invoice: Optional[str] = typer.Option(None, "--invoice"),
          on: Optional[str] = typer.Option(None, "--on"),
          source: Optional[str] = typer.Option(None, "--source", help=RECORD_SOURCE_HELP),
          by: str = typer.Option(os.environ.get("USER", "arflow-cli"), "--by")) -> None:
    """Pause outreach to a customer (or one invoice) until a date, with a reason."""
    ledger, day = _ledger_and_today(on)
    end = _parse_date(until, "--until")
    if end < day:
        raise UsageError(f"--until {end} is before today ({day})")
    known = _Known(ledger, source, day)
    customer = known.customer(customer)
    invoice = known.invoice(invoice, customer) if invoice is not None else None
    _record(ledger, "Pause", {"customer_id": customer, "invoice_id": invoice, "starts_on": day, "until": end,
                      "reason": reason, "recorded_by": by}, "pause.recorded", by, customer)


@app.command("opt-out")
def opt_out(customer: str = typer.Argument(...), reason: str = typer.Option("", "--reason"),
            withdraw: bool = typer.Option(False, "--withdraw", help="end an opt-out instead"),
            on: Optional[str] = typer.Option(None, "--on"),
            source: Optional[str] = typer.Option(None, "--source", help=RECORD_SOURCE_HELP),
            by: str = typer.Option(os.environ.get("USER", "arflow-cli"), "--by")) -> None:
    """Record that a customer opted out of automated reminders (or, with --withdraw, opted back in)."""
    ledger, day = _ledger_and_today(on)
    if not withdraw:
        customer = _Known(ledger, source, day).customer(customer)
        _record(ledger, "OptOut", {"customer_id": customer, "recorded_on": day, "reason": reason or None},
                "opt_out.recorded", by, customer)
        return
    if not ledger.withdraw_opt_out(customer, by, day):
        raise UsageError(f"customer {customer} has no opt-out in the ledger")


@cash_app.command("review")
def cash_review(payment: str = typer.Argument(..., help="payment id from the exceptions queue"),
                note: str = typer.Option(..., "--note", help="what was decided"),
                by: str = typer.Option(os.environ.get("USER", "arflow-cli"), "--by")) -> None:
    """Mark unapplied cash as looked at: the customer's reminders resume on the next run."""
    ledger, day = _ledger_and_today(None)
    if not ledger.review_cash(payment, by, day, note):
        raise UsageError(f"{payment} is not unapplied cash in the exceptions queue")


@app.command("queue")
def queue(as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout")) -> None:
    """List the open decisions by customer, ranked by risk-weighted overdue exposure, each customer with
    the whole account (owed, overdue, oldest item, credits, plans, disputes, promises, last touches);
    `arflow decide --customer C approve` settles a customer's decisions together."""
    from tasks.decisions import customer_queue, open_decisions

    ledger, _ = _ledger_and_today(None)
    rows = open_decisions(ledger)
    items = [{"id": int(r.id), "kind": r.kind, "customer_id": r.customer_id, "invoices": r.invoice_ids.split(","),
              "opened_on": str(r.opened_on), "context": json.loads(r.context)} for r in rows.itertuples()]
    by_customer = customer_queue(ledger, rows)
    if as_json:
        sys.stdout.write(json.dumps({"open": len(items), "customers": by_customer, "decisions": items},
                                    default=str) + "\n")
        return
    if not items:
        sys.stdout.write("no open decisions\n")
    found = {d["id"]: d for d in items}

    def amounts(d):
        return ", ".join(f"{v} {c}" for c, v in d.items()) or "none"

    for p in by_customer:
        oldest = p["oldest"]
        sys.stdout.write(f"{p['rank']}. {p['customer']} ({p['customer_id']}, {p['segment'] or 'segment unknown'}): "
                         f"owed {amounts(p['exposure'])}, overdue {amounts(p['overdue'])}, risk {p['risk_score']}"
                         + (f", oldest {oldest['invoice_id']} {oldest['days_past_due']}d" if oldest else "") + "\n")
        extra = [f"credits {amounts(p['credits'])}" if p["credits"] else "",
                 f"{len(p['payment_plans'])} plan(s)" if p["payment_plans"] else "",
                 f"{len(p['disputes'])} dispute(s)" if p["disputes"] else "",
                 f"{len(p['promises'])} promise(s)" if p["promises"] else "",
                 "last: " + ", ".join(f"{t['on']} {t['step']}" for t in p["last_touches"]) if p["last_touches"]
                 else "no touch sent yet"]
        sys.stdout.write("   " + "; ".join(x for x in extra if x) + "\n")
        for ref in p["decisions"]:
            d = found[ref["id"]]
            c = d["context"]
            inv = ", ".join(f"{i['invoice_number']} {i['amount']} {i['currency']} ({i['days_past_due']}d)"
                            for i in c.get("invoices", []))
            sys.stdout.write(f"   #{d['id']} {d['kind']} [{d['opened_on']}] {inv}\n")
            if c.get("proposed_subject"):
                sys.stdout.write(f"       proposed: {c['proposed_subject']}\n")
            env = c.get("envelope")
            if env:
                sys.stdout.write(f"       from {env['from']} to {', '.join(env['to']) or 'nobody'}"
                                 + (f" cc {', '.join(env['cc'])}" if env["cc"] else "") + "\n")
            if c.get("changed_since_approval"):
                ch = c["changed_since_approval"]
                sys.stdout.write(f"       changed since {ch['approved_by']} approved it: "
                                 + ", ".join(x["field"] for x in ch["changes"]) + "\n")
            if c.get("blocked"):
                sys.stdout.write(f"       blocked: {c['blocked']}\n")


@app.command("decide")
def decide(target: str = typer.Argument(..., help="the decision's id (arflow queue); with --customer, the verdict"),
           verdict: Optional[str] = typer.Argument(None, help="approve | reject"),
           customer: Optional[str] = typer.Option(None, "--customer", help="settle every open decision of this "
                                                  "customer: arflow decide --customer C1 approve"),
           note: str = typer.Option("", "--note", help="why (kept in the audit log)"),
           choice: Optional[str] = typer.Option(None, "--choice", help="payment_plan | write_off, where the step offers both"),
           installments: Optional[int] = typer.Option(None, "--installments", min=2, max=24,
                                                      help="installments of an approved payment plan"),
           subject: Optional[str] = typer.Option(None, "--subject", help="approve with this subject instead"),
           body_file: Optional[Path] = typer.Option(None, "--body-file", help="approve with this text instead"),
           by: str = typer.Option(os.environ.get("USER", "arflow-cli"), "--by",
                                  help="who decides: checked against the policy's approvals")) -> None:
    """Settle a decision, or all of a customer's: approved, the next run carries it out; rejected,
    nothing goes. The policy's approvals say who may settle what up to which amount."""
    if customer is not None:
        if verdict is not None:
            raise UsageError("with --customer give only the verdict: arflow decide --customer C1 approve")
        verdict = target
    elif verdict is None:
        raise UsageError("give the decision's id and the verdict (arflow decide 12 approve), or --customer")
    if verdict not in ("approve", "reject"):
        raise UsageError(f"verdict must be approve or reject, got {verdict!r}")
    if customer is None and not target.isdigit():
        raise UsageError(f"the decision's id is a number, got {target!r} (a customer: --customer {target})")
    if body_file is not None and not body_file.is_file():
        raise UsageError(f"--body-file {body_file} is not a file")
    if customer is not None and (subject is not None or body_file is not None):
        raise UsageError("--subject and --body-file edit one decision's message: give its id, not --customer")
    from arflow.config import Settings
    from arflow.policy import load_policy
    from tasks.decisions import DecisionError, settle, settle_customer

    ledger, day = _ledger_and_today(None)
    approvals = load_policy(Settings.from_env().policy_path).approvals
    try:
        if customer is not None:
            results = settle_customer(ledger, customer, verdict, by=by, on=day, note=note, choice=choice,
                                      installments=installments, approvals=approvals)
        else:
            results = [settle(ledger, int(target), verdict, by=by, on=day, note=note, subject=subject,
                              body=body_file.read_text() if body_file else None, choice=choice,
                              installments=installments, approvals=approvals)]
    except DecisionError as exc:
        raise UsageError(str(exc)) from None
    for r in results:
        typer.echo(f"decision {r['id']} {r['status']} ({r['touches']} touch(es))", err=True)


@app.command("ack")
def ack(task_id: int = typer.Argument(..., help="owner task id"),
        by: str = typer.Option(os.environ.get("USER", "arflow-cli"), "--by")) -> None:
    """Acknowledge an owner escalation (it then never goes to the finance lead)."""
    ledger, day = _ledger_and_today(None)
    if not ledger.acknowledge_task(task_id, by, day):
        raise UsageError(f"no open owner task {task_id}")


@app.command()
def report(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the day, YYYY-MM-DD (default: today); open invoices come "
                                        "from the latest daily run on or before it"),
    as_json: bool = typer.Option(False, "--json", help="print the KPIs as one JSON object on stdout"),
    html: Optional[Path] = typer.Option(None, "--html", help="write the dashboard page (self-contained HTML) here"),
) -> None:
    """The KPIs from the ledger (docs/kpis.md): DSO, CEI, aging, recovery, forecast, operating counts."""
    _quiet_env()
    from arflow.config import Settings
    from arflow.policy import load_policy
    from flows.reporting import kpi_report, markdown, write_page

    ledger, day = _ledger_and_today(None)
    day = _parse_date(as_of, "--as-of") or day
    policy = load_policy(Settings.from_env().policy_path)
    result = kpi_report(ledger, policy, day)
    if html is not None:
        result["page"] = str(write_page(ledger, policy, result, html))
        print(f"arflow: dashboard written to {html}", file=sys.stderr)
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    elif html is None:
        sys.stdout.write(markdown(result, f"AR KPIs {day}"))


@app.command()
def brief(as_of: Optional[str] = typer.Option(None, "--as-of", help="the day, YYYY-MM-DD (default: today)"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Run the weekly collections_brief flow (artifacts and data/reports/brief-<as_of>.html)."""
    day = _parse_date(as_of, "--as-of")
    _quiet_env()
    with contextlib.redirect_stdout(sys.stderr):
        from flows.reporting import collections_brief

        out = collections_brief(as_of=day)
    sys.stdout.write((json.dumps(out, default=str) if as_json else f"brief written to {out['page']}") + "\n")


@app.command()
def backfill(
    start: str = typer.Option(..., "--from", help="first day, YYYY-MM-DD"),
    end: str = typer.Option(..., "--to", help="last day, YYYY-MM-DD"),
    source: str = typer.Option("demo", "--source", help=SOURCE_HELP),
    crm: Optional[str] = typer.Option(None, "--crm", help=CRM_HELP),
    no_checkpoint: bool = typer.Option(False, "--no-checkpoint", help="daily runs only, no payment checkpoint"),
    redo: bool = typer.Option(False, "--redo", help="run days that already have a completed daily run again"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Replay the business days from --from to --to in order (dry-run; resumable: finished days are skipped)."""
    first, last = _parse_date(start, "--from"), _parse_date(end, "--to")
    if last < first:
        raise UsageError(f"--to {last} is before --from {first}")
    source = _check_source(source, crm)
    _quiet_env()
    with contextlib.redirect_stdout(sys.stderr):
        from flows.backfill import backfill as backfill_flow

        out = backfill_flow(start=first, end=last, source=source, with_checkpoint=not no_checkpoint, resume=not redo)
    sys.stdout.write((json.dumps(out) if as_json else
                      f"backfill {first}..{last}: ran {len(out['ran'])} day(s), skipped {len(out['skipped_already_done'])}")
                     + "\n")


@app.command()
def simulate(
    days: int = typer.Option(365, "--days", help="calendar days to simulate"),
    customers: int = typer.Option(500, "--customers", help="simulated customers"),
    policy: str = typer.Option("default", "--policy", help="static, default, silent or a policy file"),
    compare_with: Optional[str] = typer.Option(None, "--compare", help="policies to compare, e.g. static,default"),
    scenario: str = typer.Option("central", "--scenario", help="response assumptions: pessimistic, central, optimistic"),
    sensitivity: bool = typer.Option(False, "--sensitivity", help="with --compare: under all three response assumptions"),
    seed: int = typer.Option(1, "--seed"),
    start: str = typer.Option("2026-01-05", "--start", help="the first simulated day, YYYY-MM-DD"),
    behaviour: Optional[Path] = typer.Option(None, "--behaviour", help="behaviour file (default simulation.yaml)"),
    workers: int = typer.Option(2, "--workers", help="simulations run in parallel processes"),
    model: Optional[str] = typer.Option(None, "--model", help="fake: score with Claude through the recording fake "
                                        "(reports the model's calls and cost per invoice per day)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="write the comparison as markdown here"),
    html: Optional[Path] = typer.Option(None, "--html", help="write the comparison page (HTML, charts) here"),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", help="fit the timing model to the IBM file and print it"),
) -> None:
    """Replay a simulated portfolio day by day through the daily flow and the checkpoint (docs/simulator.md):
    DSO, bad debt, escalations and customer friction per policy."""
    _quiet_env()
    if calibrate is not None:
        from tasks.calibration import fit

        sys.stdout.write(json.dumps(fit(calibrate)) + "\n")
        return
    from connectors.simulated import load_behaviour
    from flows import simulate as sim
    from tasks import simulation as simreport

    first = _parse_date(start, "--start")
    if days < 1 or customers < 1:
        raise UsageError("--days and --customers must be at least 1")
    known = load_behaviour(behaviour)["scenarios"]
    scenarios = list(known) if sensitivity else [scenario]
    for s in scenarios:
        if s not in known:
            raise UsageError(f"--scenario {s!r} is not one of {sorted(known)}")
    policies = [p.strip() for p in compare_with.split(",") if p.strip()] if compare_with else [policy]
    for p in policies:
        if p not in sim.BUILTIN and not Path(p).exists():
            raise UsageError(f"--policy {p!r} is not one of {list(sim.BUILTIN)} nor a policy file")
    if model not in (None, "fake"):
        raise UsageError(f"--model must be fake, got {model!r}")
    common = {"days": days, "customers": customers, "seed": seed, "start": first,
              "behaviour_path": str(behaviour) if behaviour else None, "model": model}
    report = sim.compare(policies=policies, scenarios=scenarios, workers=workers, **common)
    if markdown_out is not None:
        markdown_out.write_text(simreport.markdown(report))
    if html is not None:
        html.write_text(simreport.html_page(report))
        print(f"arflow: simulation page written to {html}", file=sys.stderr)
    if as_json:
        sys.stdout.write(json.dumps(report, default=str) + "\n")
    else:
        sys.stdout.write(simreport.markdown(report))


@app.command()
def replies(
    replies_from: str = typer.Option(..., "--from", help="a .mbox file, a .csv or .json drop, or imap (ARFLOW_IMAP_*)"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the day, YYYY-MM-DD (default: today)"),
    source: str = typer.Option("demo", "--source", help=SOURCE_HELP + " (to match replies to invoices)"),
    crm: Optional[str] = typer.Option(None, "--crm", help=CRM_HELP),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Triage customers' replies: class (paid, promise, dispute, wrong contact, out of office, complaint,
    refund, legal, question) and its effect in the ledger."""
    day = _parse_date(as_of, "--as-of")
    source = _check_source(source, crm)
    if replies_from != "imap" and not Path(replies_from).is_file():
        raise UsageError(f"--from {replies_from}: no such file (or use imap)")
    _quiet_env()
    from connectors.inbox import InboxError

    with contextlib.redirect_stdout(sys.stderr):
        from flows.replies import reply_triage

        try:
            out = reply_triage(replies_from=replies_from, as_of=day, source=source)
        except InboxError as exc:
            raise UsageError(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(out, default=str) + "\n")
    else:
        for r in out["replies"]:
            sys.stdout.write(f"{r['category']:<15} {r['customer_id'] or '(unmatched)':<12} {r['effect']}"
                             f"{'  [flagged: ' + r['flagged'] + ']' if r['flagged'] else ''}\n")
        sys.stdout.write(f"{out['new']} new repl{'y' if out['new'] == 1 else 'ies'}\n")


@app.command()
def backtest(
    labels: Path = typer.Option(..., "--labels", help="labelled invoices, CSV (prompts/backtest/demo_labels.csv)"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the day the labels describe (default: today)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Score labelled invoices and print agreement per field and the confusion tables; with the
    model (ANTHROPIC_API_KEY) a pass is recorded for its prompt version, which send mode requires.
    Exit 0 when agreement meets the policy's threshold, 1 when not."""
    _quiet_env()
    from arflow.config import Settings, today_in
    from arflow.policy import load_policy
    from connectors.ledger.store import Ledger
    from connectors.llm import open_llm
    from tasks import backtest as bt
    from tasks.ai_score import prompt_version

    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    day = _parse_date(as_of, "--as-of") or today_in(settings.timezone or policy.timezone)
    try:
        frame = bt.load_labels(labels)
    except bt.LabelError as exc:
        raise UsageError(str(exc)) from None
    ledger = Ledger(settings.db_url)
    llm = open_llm(policy, as_of=day)
    result = bt.run_backtest(frame, policy, llm, as_of=day)
    version = prompt_version()
    model = llm.model_for("score") if llm is not None else None
    result.update(prompt_version=version, model_name=model)
    if llm is not None:
        ledger.record_llm(llm.calls, [])
        result.update(llm.totals())
    bt.record(ledger, result, labels, version, model)
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        sys.stdout.write(f"backtest of {result['scorer']} ({model or 'rules'}, prompt {version}) on {result['n']} "
                         f"invoices: tone {result['tone_agreement']:.0%}, escalation {result['escalation_agreement']:.0%} "
                         f"(threshold {result['threshold']:.0%}): {'passed' if result['passed'] else 'NOT passed'}\n")
        for field in ("tone", "escalation"):
            table = result["confusion"][field]
            cols = list(next(iter(table.values())))
            sys.stdout.write(f"\n{field}: label (rows) x predicted (columns)\n" + " " * 12
                             + "".join(f"{c:>12}" for c in cols) + "\n")
            for lab, row in table.items():
                sys.stdout.write(f"{lab:>12}" + "".join(f"{row[c]:>12}" for c in cols) + "\n")
    if not result["passed"]:
        raise typer.Exit(EXIT_FAILED)


@app.command("setup-alerts")
def setup_alerts(
    slack_webhook: Optional[str] = typer.Option(None, "--slack-webhook", help="save this Slack webhook URL as the "
                                                "arflow-slack block and notify through it"),
    block: str = typer.Option("slack-webhook/arflow-slack", "--block", help="a Prefect notification block, TYPE/NAME "
                              "(e.g. sendgrid-email/ops for e-mail)"),
) -> None:
    """Create the Prefect Automation that notifies on a Failed or Crashed arflow flow run (needs PREFECT_API_URL)."""
    _quiet_env()
    from arflow.alerts import setup_alerts as create

    try:
        out = create(block=block, slack_webhook=slack_webhook)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(json.dumps(out) + "\n")


@app.command()
def statement(
    customer: str = typer.Argument(..., help="customer id"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the statement's day, YYYY-MM-DD (default: today)"),
    since: Optional[str] = typer.Option(None, "--since", help="the period's first day (default: the 1st of the month)"),
    source: str = typer.Option("demo", "--source", help=SOURCE_HELP),
    pdf: Optional[Path] = typer.Option(None, "--pdf", help="write the statement as a PDF here (WeasyPrint)"),
    html: Optional[Path] = typer.Option(None, "--html", help="write the statement as an HTML page here"),
    as_json: bool = typer.Option(False, "--json", help="print the statement as one JSON object on stdout"),
) -> None:
    """A customer's statement of account: the period's invoices, credits and payments with the running
    balance, every open item and the aging, per currency, in the customer's language."""
    _quiet_env()
    from arflow.config import Settings
    from arflow.policy import load_policy
    from flows import prefect_tasks as t
    from tasks import credits, hops
    from tasks import statement as stm

    ledger, day = _ledger_and_today(None)
    day = _parse_date(as_of, "--as-of") or day
    start = _parse_date(since, "--since")
    if start is not None and start > day:
        raise UsageError(f"--since {start} is after --as-of {day}")
    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    inputs = t.fetch_inputs.fn(_check_source(source), ledger, day, settings.data_dir)
    extracted, good_customers = hops.extract_aging(inputs, day, policy)
    known = good_customers[good_customers["customer_id"] == customer]
    if known.empty:
        raise UsageError(f"no customer {customer!r} in the source's customer file")
    lang = stm.language_of(known.iloc[0], policy)
    st = stm.build(customer, as_of=day, since=start, aged=extracted.frame, raw_invoices=inputs.invoices,
                   customers=good_customers, payments=ledger.payments_received(),
                   credit_notes=credits.parse(inputs.credit_notes)[0], language=lang)
    page = stm.render_html(st)
    if html is not None:
        html.write_text(page, encoding="utf-8")
        print(f"arflow: statement written to {html}", file=sys.stderr)
    if pdf is not None:
        pdf.write_bytes(stm.render_pdf(page))
        print(f"arflow: statement written to {pdf}", file=sys.stderr)
    if as_json or (html is None and pdf is None):
        sys.stdout.write(json.dumps(st.as_dict(), default=str) + "\n")
audit_app = typer.Typer(help="The audit log for a review: every touch, decision, record and change, with who and "
                                "when, each row chained to the one before by a hash (docs/controls.md).")
app.add_typer(audit_app, name="audit")


@audit_app.command("export")
def audit_export(
    start: str = typer.Option(..., "--from", help="first day, YYYY-MM-DD (UTC)"),
    end: str = typer.Option(..., "--to", help="last day, YYYY-MM-DD (UTC), included"),
    fmt: str = typer.Option("csv", "--format", help="csv | json"),
    out: Optional[Path] = typer.Option(None, "--out", help="write here (default: stdout)"),
) -> None:
    """Write the audit log from --from to --to with each row's hashes; stderr says whether the chain
    is intact (an edit or a deletion in the ledger shows as a break)."""
    from connectors.ledger import audit

    first, last = _parse_date(start, "--from"), _parse_date(end, "--to")
    if last < first:
        raise UsageError(f"--to {last} is before --from {first}")
    if fmt not in ("csv", "json"):
        raise UsageError(f"--format must be csv or json, got {fmt!r}")
    ledger, _ = _ledger_and_today(None)
    rows = ledger.audit_rows(first, last)
    check = audit.verify(rows)
    meta = {"export": "arflow audit log", "from": first.isoformat(), "to": last.isoformat(),
            "exported_at": audit.when(dt.datetime.now(dt.timezone.utc)), "hash": "sha256(prev_hash + canonical JSON)",
            "anchor": check.get("anchor") or (rows[0]["prev_hash"] if rows else None),
            "head": check.get("head") or (rows[-1]["hash"] if rows else None)}
    text = audit.to_json(rows, meta) if fmt == "json" else audit.to_csv(rows)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    state = "chain intact" if check["ok"] else f"CHAIN BROKEN: {check['why']}"
    print(f"arflow: {len(rows)} audit row(s) {first}..{last}" + (f" -> {out}" if out else "") + f"; {state}",
          file=sys.stderr)


@audit_app.command("verify")
def audit_verify(file: Path = typer.Argument(..., help="an export of `arflow audit export` (CSV or JSON)"),
                 as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout")) -> None:
    """Check an export's hash chain: every row matches its hash and follows the one before. Exit 0
    when intact; 1 naming the first row that was changed, or after which one is missing."""
    from connectors.ledger import audit

    if not file.is_file():
        raise UsageError(f"{file} is not a file")
    try:
        result = audit.verify(audit.read_export(file.read_text(encoding="utf-8")))
    except audit.AuditFileError as exc:
        raise UsageError(f"{file}: {exc}") from None
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    elif result["ok"]:
        sys.stdout.write(f"ok: {result['rows']} row(s), chain intact"
                         + (f" (head {result['head'][:16]})" if result["head"] else "") + "\n")
    else:
        sys.stdout.write(f"BROKEN at row {result['row']} (seq {result['seq']}): {result['why']}\n")
    if not result["ok"]:
        raise typer.Exit(EXIT_FAILED)


db_app = typer.Typer(help="The ledger's schema: where it is and bringing it up to date (docs/operating.md).")
app.add_typer(db_app, name="db")


def _ledger_unchecked():
    from arflow.config import Settings
    from connectors.ledger.store import Ledger

    return Ledger(Settings.from_env().db_url, migrate=False)


@db_app.command("status")
def db_status(as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout")) -> None:
    """The ledger's migration, this arflow's newest, and what `arflow db upgrade` would run. Exit 0
    when current; 1 when migrations are pending or the ledger is newer than this arflow."""
    from connectors.ledger.store import _redact

    ledger = _ledger_unchecked()
    current, head = ledger.revisions()
    pending = ledger.pending((current, head))
    state = "current" if current == head else "pending" if pending else "unknown"
    out = {"ledger": _redact(ledger.url), "migration": current, "newest": head, "pending": pending, "state": state}
    if as_json:
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        say = {"current": "up to date", "pending": f"{len(pending)} migration(s) to run: arflow db upgrade",
               "unknown": "written by a newer arflow: upgrade arflow"}[state]
        sys.stdout.write(f"{out['ledger']}: migration {current or 'none'}, newest {head}; {say}\n")
    if state != "current":
        raise typer.Exit(EXIT_FAILED)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the ledger to this arflow's newest migration (a new one is created). Safe to run from
    several processes at once (they wait on one lock); back up a ledger in use first."""
    from connectors.ledger.store import _redact

    ledger = _ledger_unchecked()
    before = ledger.revisions()[0]
    todo = ledger.pending()
    ledger.migrate()
    after, head = ledger.revisions()
    ran = f"ran {len(todo)} migration(s) ({', '.join(todo)})" if todo else "nothing to run"
    print(f"arflow: {_redact(ledger.url)}: migration {before or 'none'} -> {after}; {ran}", file=sys.stderr)


# The errors that end a run with one line and exit 1, by module: looked up only once something was
# raised, so `arflow --help` and argument errors never import the heavy libraries behind them.
_RUN_ERRORS = (("arflow.policy", "PolicyError"), ("connectors.ledger.store", "LedgerError"),
               ("connectors.messaging", "ChannelNotConfigured"),
               ("connectors.messaging", "SendError"), ("connectors.sources", "SourceError"),
               ("tasks.quality", "DataQualityError"), ("arflow.settings", "SettingsError"))


def _run_error(exc: BaseException) -> bool:
    for module, name in _RUN_ERRORS:
        loaded = sys.modules.get(module)  # an error of a module that was never imported was never raised
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return True
    return False


def _ledger_error(exc: BaseException) -> bool:
    loaded = sys.modules.get("sqlalchemy.exc")
    return loaded is not None and isinstance(exc, loaded.SQLAlchemyError)


def _fail(text: str, code: int) -> None:
    """One line on stderr, secrets masked (arflow.safety), then exit."""
    from arflow.safety import error_line

    print(f"arflow: error: {error_line(text)}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Console entry point with one-line errors."""
    try:
        args = sys.argv[1:]
        if args and args[0] != "config" and not {"--help", "-h"} & set(args):
            from arflow.settings import load

            load()  # a bad ARFLOW_* value stops here, named, before a server starts or a flow runs
        code = app(standalone_mode=False)  # click returns a typer.Exit's code here instead of raising it
        if isinstance(code, int) and code:
            sys.exit(code)
    except UsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(EXIT_FAILED)
    except Exception as exc:  # the run's own errors, usage errors of the CLI library, and anything unexpected
        from arflow.safety import error_line

        if _run_error(exc):
            _fail(str(exc), EXIT_FAILED)
        if _ledger_error(exc):  # the database refused (read-only file, lost connection): its message, not SQL
            _fail(f"the ledger refused: {error_line(exc)}", EXIT_FAILED)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's (or typer's copy of) errors
            _fail(exc.format_message(), EXIT_USAGE)
        _fail(f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", EXIT_FAILED)


if __name__ == "__main__":
    main()
