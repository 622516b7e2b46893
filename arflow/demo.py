"""Demo data: a generated, realistic AR portfolio, deterministic for a seed and an anchor date.

Writes the CSV source format of DESIGN.md into a folder (invoices, customers, payments, the books'
aging report) plus ``ledger_seed/`` with what a running installation's ledger would hold (payment
history, disputes, promises, payment plans, pauses). What it contains, on purpose:

- 240 customers: strategic, standard and transactional; six countries and currencies (JPY has no
  minor unit); ARR, tenure, NPS, health, renewal dates, owners, billing contacts.
- a year of monthly invoices (about 2,900), most paid, paid late by each customer's behaviour:
  on time, a little late, chronic late payers, and a few who stop paying;
- subscriptions on autopay, strategic accounts whose AP person is on leave (a pause), at-risk
  accounts near renewal, open disputes, kept and broken promises to pay, a payment plan;
- open invoices due on public holidays, partly paid invoices, terms-only due dates;
- payments received in the last days that the payment checkpoint has yet to apply;
- a handful of malformed rows that the run must quarantine, each with a different reason;
- the books' aging report, matching ours except for two customers.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from arflow import businessdays
from arflow.money import format_minor, minor_digits

COUNTRIES = [("US", "USD", 0.58), ("GB", "GBP", 0.12), ("DE", "EUR", 0.09), ("CA", "CAD", 0.09),
             ("FR", "EUR", 0.06), ("JP", "JPY", 0.06)]
FX_PER_USD = {"USD": 1.0, "GBP": 0.79, "EUR": 0.92, "CAD": 1.36, "JPY": 150.0}
FIRST = ["Ana", "Ben", "Chloe", "Dev", "Elena", "Farah", "Greg", "Hana", "Ivan", "Jun", "Kemi", "Luis", "Maya",
         "Nils", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Viktor", "Wen", "Yusuf", "Zoe"]
LAST = ["Abbott", "Berg", "Costa", "Dubois", "Eze", "Fischer", "Garcia", "Hughes", "Ito", "Jensen", "Khan",
        "Larsen", "Moreau", "Novak", "Okafor", "Patel", "Rossi", "Schmidt", "Tanaka", "Varga", "Weber", "Young"]
NOUNS = ["Analytics", "Logistics", "Foods", "Robotics", "Health", "Energy", "Media", "Labs", "Retail", "Systems",
         "Partners", "Works", "Bio", "Capital", "Studio", "Freight", "Textiles", "Clinics", "Software", "Marine"]
PREFIX = ["North", "Blue", "Acme", "Vertex", "Harbor", "Summit", "Cedar", "Atlas", "Nova", "Pioneer", "Orbit",
          "Crescent", "Granite", "Lumen", "Maple", "Quartz", "Riverside", "Silver", "Tidal", "Union"]
SEED_TABLES = ("payment_history", "disputes", "promises", "payment_plans", "pauses")
DEMO_DOMAIN = "arflow-demo.example"


def _money(minor: int, currency: str) -> str:
    return format_minor(int(minor), currency)


def generate(folder: Path, *, anchor: dt.date, seed: int = 42, customers: int = 240) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "ledger_seed").mkdir(parents=True)

    # ---- customers -------------------------------------------------------------------------
    n = customers
    seg = rng.choice(["strategic", "standard", "transactional"], n, p=[0.12, 0.63, 0.25])
    cidx = rng.choice(len(COUNTRIES), n, p=[c[2] for c in COUNTRIES])
    country = np.array([COUNTRIES[i][0] for i in cidx])
    currency = np.array([COUNTRIES[i][1] for i in cidx])
    arr_usd = np.where(seg == "strategic", rng.uniform(150_000, 600_000, n),
                       np.where(seg == "standard", rng.uniform(20_000, 150_000, n), rng.uniform(1_500, 20_000, n)))
    profile = rng.choice(["on_time", "slightly_late", "chronic", "stops_paying"], n, p=[0.55, 0.25, 0.16, 0.04])
    autopay = (seg == "transactional") & (rng.random(n) < 0.7) | (seg == "standard") & (rng.random(n) < 0.2)
    health = np.where(rng.random(n) < 0.18, "at_risk", "healthy")
    renewal = [anchor + dt.timedelta(days=int(d)) for d in rng.integers(-20, 420, n)]
    names, rows = set(), []
    for i in range(n):
        while True:
            nm = f"{PREFIX[rng.integers(len(PREFIX))]} {NOUNS[rng.integers(len(NOUNS))]}"
            if nm not in names:
                names.add(nm)
                break
        first, last = FIRST[rng.integers(len(FIRST))], LAST[rng.integers(len(LAST))]
        slug = nm.lower().replace(" ", "")
        ae = f"ae{1 + i % 12}@{DEMO_DOMAIN}"
        csm = f"csm{1 + i % 8}@{DEMO_DOMAIN}" if seg[i] != "transactional" else ""
        rows.append({
            "customer_id": f"CUST-{i + 1:04d}", "name": nm, "segment": seg[i],
            "arr": f"{arr_usd[i]:.2f}", "tenure_months": str(int(rng.integers(1, 97 if seg[i] == "strategic" else 60))),
            "nps": "" if rng.random() < 0.3 else str(int(rng.integers(-40, 81))), "health": health[i],
            "renewal_date": renewal[i].isoformat(), "owner_ae_email": ae, "owner_csm_email": csm,
            "billing_contact_name": f"{first} {last}", "billing_contact_email": f"ap@{slug}.example",
            "country": country[i], "opt_out": "false", "paused_until": ""})
    cust = pd.DataFrame(rows)
    # A few customers opted out of automated reminders; strategic accounts with the AP person on leave.
    opt_idx = rng.choice(np.where(seg == "standard")[0], 3, replace=False)
    cust.loc[opt_idx, "opt_out"] = "true"
    strategic = np.where((seg == "strategic") & (profile != "stops_paying"))[0]
    leave_idx = rng.choice(strategic, 3, replace=False)
    cust.loc[leave_idx[:1], "paused_until"] = (anchor + dt.timedelta(days=21)).isoformat()

    # ---- invoices: 12 months of subscriptions -------------------------------------------------
    company_holidays = businessdays.holiday_array(("US",), anchor.year - 1, anchor.year + 1)
    inv_rows, history, n_inv = [], [], 0
    for i in range(n):
        cur = currency[i]
        digits = minor_digits(cur)
        monthly_minor = int(round(arr_usd[i] / 12 * FX_PER_USD[cur] * (10 ** digits)))
        terms = ("net60" if seg[i] == "strategic" and rng.random() < 0.5 else "net45") if seg[i] == "strategic" \
            else ("due_on_receipt" if seg[i] == "transactional" and rng.random() < 0.3
                  else ("eom30" if rng.random() < 0.1 else "net30"))
        day = int(rng.integers(1, 29))
        for k in range(12, 0, -1):
            month = (anchor.replace(day=1) - pd.DateOffset(months=k - 1)).date()
            issue = month.replace(day=day)
            if issue > anchor:
                continue
            due = _due(issue, terms)
            amount = max(1, int(monthly_minor * rng.uniform(0.9, 1.1)))
            n_inv += 1
            late = _days_late(profile[i], bool(autopay[i]), rng)
            paid = None if late is None else due + dt.timedelta(days=late)
            status, balance = "open", amount
            if paid is not None and paid <= anchor:
                status, balance = "paid", 0
                history.append({"invoice_id": f"INV-{n_inv:05d}", "customer_id": cust.at[i, "customer_id"],
                                "issue_date": issue.isoformat(), "due_date": due.isoformat(),
                                "paid_date": paid.isoformat(), "amount_minor": amount, "currency": cur})
            elif rng.random() < 0.06 and amount > 10:
                balance = int(amount * rng.uniform(0.3, 0.8))  # partly paid
            inv_rows.append({
                "invoice_id": f"INV-{n_inv:05d}", "customer_id": cust.at[i, "customer_id"],
                "invoice_number": str(10000 + n_inv), "issue_date": issue.isoformat(),
                "due_date": "" if rng.random() < 0.15 else due.isoformat(), "terms": terms, "currency": cur,
                "amount": _money(amount, cur), "balance": _money(balance, cur), "status": status,
                "autopay": "true" if autopay[i] else "false",
                "payment_link": f"https://pay.{DEMO_DOMAIN}/i/INV-{n_inv:05d}",
                "po_number": f"PO-{rng.integers(1000, 9999)}" if seg[i] != "transactional" else ""})
    inv = pd.DataFrame(inv_rows)
    open_mask = inv["status"] == "open"

    # Open invoices due on public holidays (ours), before and after the anchor.
    near = [d for d in company_holidays.astype("datetime64[D]").astype(object)
            if -40 <= (d - anchor).days <= 40]
    open_ids = inv.index[open_mask & (inv["currency"] == "USD")].to_numpy()
    for d, ix in zip(near, rng.choice(open_ids, min(len(near) * 2, len(open_ids)), replace=False).reshape(-1, 2)
                     if len(near) else []):
        for j in ix:
            issue = d - dt.timedelta(days=30)
            inv.loc[j, ["issue_date", "due_date", "terms"]] = [issue.isoformat(), d.isoformat(), "net30"]

    # ---- ledger records ------------------------------------------------------------------------
    open_inv = inv[open_mask].copy()
    open_inv["due"] = [_due(dt.date.fromisoformat(r.issue_date), r.terms) if not r.due_date
                       else dt.date.fromisoformat(r.due_date) for r in open_inv.itertuples()]
    overdue = open_inv[open_inv["due"] < anchor]
    pick = rng.choice(overdue.index, 22, replace=False)
    disputes = [{"invoice_id": inv.at[j, "invoice_id"], "customer_id": inv.at[j, "customer_id"],
                 "opened_on": (anchor - dt.timedelta(days=int(rng.integers(2, 20)))).isoformat(),
                 "reason": r} for j, r in zip(pick[:8], ["wrong quantity billed", "service outage credit",
                                                          "PO number missing", "duplicate charge", "price increase",
                                                          "not received", "wrong entity", "tax amount"])]
    promises = [{"invoice_id": inv.at[j, "invoice_id"], "customer_id": inv.at[j, "customer_id"],
                 "recorded_on": (anchor - dt.timedelta(days=6)).isoformat(),
                 "promised_date": (anchor + dt.timedelta(days=int(d))).isoformat(),
                 "note": "kept" if d >= 0 else "broken: date passed unpaid"}
                for j, d in zip(pick[8:16], [3, 5, 7, 10, 2, -3, -5, -1])]
    plan_cust = inv.at[pick[16], "customer_id"]
    plans = [{"customer_id": plan_cust, "starts_on": (anchor - dt.timedelta(days=30)).isoformat(),
              "ends_on": (anchor + dt.timedelta(days=90)).isoformat(), "status": "active"}]
    pauses = [{"customer_id": cust.at[j, "customer_id"], "starts_on": (anchor - dt.timedelta(days=5)).isoformat(),
               "until": (anchor + dt.timedelta(days=int(rng.integers(10, 30)))).isoformat(),
               "reason": "AP contact on leave; owner asked to pause reminders", "recorded_by": cust.at[j, "owner_ae_email"]}
              for j in leave_idx[1:]]

    # ---- payments received, not yet applied by the checkpoint ------------------------------------
    payments = _recent_payments(inv[open_mask], anchor, rng)
    bank = _bank_statement(inv[open_mask & ~inv["invoice_number"].isin(
        payments["reference"].str.extract(r"(\d{5})")[0].dropna())], cust, anchor, rng)

    # ---- the books' aging report (before malformed rows are added) --------------------------------
    aging = _books_aging(inv[open_mask], anchor)
    for j in rng.choice(len(aging), 2, replace=False):  # two customers where the books differ from us
        cur = inv.loc[inv["customer_id"] == aging.at[j, "customer_id"], "currency"].iloc[0]
        extra = 150 * 10 ** minor_digits(cur)
        aging.at[j, "d1_30"] = _money(_minor_of(aging.at[j, "d1_30"], cur) + extra, cur)
        aging.at[j, "total"] = _money(_minor_of(aging.at[j, "total"], cur) + extra, cur)

    # ---- malformed rows, one per quarantine reason ---------------------------------------------
    base = inv[open_mask].iloc[0].to_dict()
    bad = []
    for k, (field_values, _reason) in enumerate([
        ({"issue_date": "2026-13-45"}, "bad_date"),
        ({"due_date": "31/12/2026"}, "bad_date"),
        ({"amount": "1,2x0.00"}, "bad_amount"),
        ({"due_date": "", "terms": ""}, "missing_due_date_and_terms"),
        ({"balance": "-125.00", "amount": "125.00", "currency": "USD"}, "negative_balance"),
        ({"customer_id": "CUST-9999"}, "unknown_customer"),
        ({"currency": "XYZ"}, "unknown_currency"),
        ({"due_date": "", "terms": "net thirty"}, "unknown_terms"),
    ]):
        row = {**base, "invoice_id": f"BAD-{k + 1:03d}", "invoice_number": f"9{k:04d}", **field_values}
        bad.append(row)
    dup = inv[open_mask].iloc[1].to_dict()
    bad.append({**dup, "invoice_number": "99999", "balance": dup["amount"]})  # duplicate invoice_id
    inv = pd.concat([inv, pd.DataFrame(bad)], ignore_index=True)

    inv.to_csv(folder / "invoices.csv", index=False)
    cust.to_csv(folder / "customers.csv", index=False)
    payments.to_csv(folder / "payments.csv", index=False)
    bank.to_csv(folder / "bank_statement.csv", index=False)
    aging.to_csv(folder / "aging_report.csv", index=False)
    # The billing system's payment methods on file (autopay customers): about one card in eight
    # has expired or is short of funds, so the failed-charge path shows in the demo. Its own
    # random stream, so the rest of the portfolio does not move when this changes.
    prng = np.random.default_rng([seed, 7])
    auto = cust.loc[autopay, "customer_id"].tolist()
    status = prng.choice(["valid", "card_expired", "insufficient_funds"], len(auto), p=[0.875, 0.1, 0.025])
    pd.DataFrame({"customer_id": auto, "method": prng.choice(["card", "debit"], len(auto), p=[0.8, 0.2]),
                  "status": status}).to_csv(folder / "payment_methods.csv", index=False)
    seed_dir = folder / "ledger_seed"
    pd.DataFrame(history).to_csv(seed_dir / "payment_history.csv", index=False)
    pd.DataFrame(disputes).to_csv(seed_dir / "disputes.csv", index=False)
    pd.DataFrame(promises).to_csv(seed_dir / "promises.csv", index=False)
    pd.DataFrame(plans).to_csv(seed_dir / "payment_plans.csv", index=False)
    pd.DataFrame(pauses).to_csv(seed_dir / "pauses.csv", index=False)
    (folder / "demo.json").write_text(json.dumps({"seed": seed, "anchor": anchor.isoformat(),
                                                  "customers": n, "invoices": int(len(inv))}, indent=1))
    return folder


def _due(issue: dt.date, terms: str) -> dt.date:
    if terms == "due_on_receipt":
        return issue
    if terms.startswith("eom"):
        end = (pd.Timestamp(issue) + pd.offsets.MonthEnd(0)).date()
        return end + dt.timedelta(days=int(terms[3:]))
    return issue + dt.timedelta(days=int(terms[3:]))


def _days_late(profile: str, autopay: bool, rng) -> int | None:
    if autopay and rng.random() < 0.93:
        return 0
    if profile == "on_time":
        return int(max(-5, min(3, rng.normal(-1, 3))))
    if profile == "slightly_late":
        return int(rng.exponential(9))
    if profile == "chronic":
        return int(12 + rng.exponential(25))
    return None if rng.random() < 0.5 else int(40 + rng.exponential(45))


def _minor_of(text: str, cur: str) -> int:
    from arflow.money import to_minor

    return to_minor(text or "0", cur)


def _books_aging(open_inv: pd.DataFrame, anchor: dt.date) -> pd.DataFrame:
    rows = []
    for cid, g in open_inv.groupby("customer_id"):
        cur = g["currency"].iloc[0]
        buckets = dict.fromkeys(("current", "d1_30", "d31_60", "d61_90", "d91_plus"), 0)
        for r in g.itertuples():
            due = dt.date.fromisoformat(r.due_date) if r.due_date else _due(dt.date.fromisoformat(r.issue_date), r.terms)
            dpd = (anchor - due).days
            b = "current" if dpd <= 0 else "d1_30" if dpd <= 30 else "d31_60" if dpd <= 60 else \
                "d61_90" if dpd <= 90 else "d91_plus"
            buckets[b] += _minor_of(r.balance, cur)
        rows.append({"customer_id": cid, **{k: _money(v, cur) for k, v in buckets.items()},
                     "total": _money(sum(buckets.values()), cur)})
    return pd.DataFrame(rows)


def _recent_payments(open_inv: pd.DataFrame, anchor: dt.date, rng) -> pd.DataFrame:
    """Cash received in the last days: exact, partial, over-payment, several invoices at once,
    no reference, and unidentifiable."""
    rows, k = [], 0
    sample = open_inv.sample(n=min(40, len(open_inv)), random_state=int(rng.integers(1 << 30)))
    def add(cid, minor, cur, ref):
        nonlocal k
        k += 1
        rows.append({"payment_id": f"PAY-{k:05d}", "customer_id": cid, "amount": _money(minor, cur),
                     "currency": cur, "received_date": (anchor - dt.timedelta(days=int(rng.integers(0, 4)))).isoformat(),
                     "reference": ref})
    it = iter(sample.itertuples())
    for _ in range(12):  # exact
        r = next(it); add(r.customer_id, _minor_of(r.balance, r.currency), r.currency, f"Invoice {r.invoice_number}")
    for _ in range(4):   # partial
        r = next(it); add(r.customer_id, _minor_of(r.balance, r.currency) // 2, r.currency, f"INV {r.invoice_number} part")
    for _ in range(2):   # over-payment
        r = next(it); add(r.customer_id, _minor_of(r.balance, r.currency) + 5000, r.currency, r.invoice_number)
    for _ in range(3):   # no reference, amount fits one invoice
        r = next(it); add(r.customer_id, _minor_of(r.balance, r.currency), r.currency, "")
    multi = open_inv.groupby("customer_id").filter(lambda g: len(g) >= 2)
    for cid, g in list(multi.groupby("customer_id"))[:3]:  # one payment for two invoices
        cur = g["currency"].iloc[0]
        add(cid, sum(_minor_of(b, cur) for b in g["balance"].iloc[:2]), cur, "remittance: see attached")
    add("", 123456, "USD", "WIRE TRANSFER 88123")  # unidentifiable
    add("", 9900, "EUR", "thank you")
    rows.append(dict(rows[0]))  # the billing export lists one payment twice
    partial = rows[12]           # a card chargeback of one partial payment
    k += 1
    rows.append({**partial, "payment_id": f"PAY-{k:05d}", "amount": "-" + partial["amount"],
                 "reference": f"CHARGEBACK {partial['payment_id']}"})
    return pd.DataFrame(rows)


def _bank_statement(open_inv: pd.DataFrame, customers: pd.DataFrame, anchor: dt.date, rng) -> pd.DataFrame:
    """A bank statement (CSV): payers known by name only, remittance text, a debit, an unknown payer."""
    usd = open_inv[open_inv["currency"] == "USD"].sample(n=4, random_state=int(rng.integers(1 << 30)))
    names = customers.set_index("customer_id")["name"]
    day = (anchor - dt.timedelta(days=1)).isoformat()
    rows = [{"date": day, "amount": r.balance, "currency": "USD", "reference": f"INV {r.invoice_number} THANK YOU",
             "payer_name": names[r.customer_id].upper()} for r in usd.iloc[:2].itertuples()]
    r = usd.iloc[2]
    rows.append({"date": day, "amount": r["balance"], "currency": "USD", "reference": "ACH CREDIT",
                 "payer_name": names[r["customer_id"]]})  # payer name and amount only
    rows.append({"date": day, "amount": "-250.00", "currency": "USD", "reference": "BANK FEE", "payer_name": ""})
    rows.append({"date": day, "amount": "777.77", "currency": "USD", "reference": "DEPOSIT", "payer_name": "J SMITH"})
    return pd.DataFrame(rows)


def ensure_demo(folder: Path, *, anchor: dt.date, seed: int = 42) -> Path:
    """The demo folder, generated (anchored at `anchor`) if it is not there yet."""
    if not (Path(folder) / "demo.json").exists():
        generate(folder, anchor=anchor, seed=seed)
    return Path(folder)


def seed_ledger(ledger, folder: Path) -> bool:
    """Write the demo's ledger records once per generated demo. Returns True if it wrote."""
    meta = (Path(folder) / "demo.json").read_text()
    fingerprint = json.dumps(json.loads(meta), sort_keys=True)
    if ledger.get_meta("demo_seed") == fingerprint:
        return False
    customers = pd.read_csv(Path(folder) / "customers.csv", dtype=str)["customer_id"].tolist()
    frames = {}
    for name in SEED_TABLES:
        df = pd.read_csv(Path(folder) / "ledger_seed" / f"{name}.csv", dtype=str, keep_default_na=False)
        for col in df.columns:
            if col.endswith(("_on", "_date")) or col == "until":
                df[col] = pd.to_datetime(df[col]).dt.date
            if col == "amount_minor":
                df[col] = df[col].astype("int64")
        frames[name] = df.replace("", None)
    ledger.seed_demo(frames, customers, json.loads(meta))
    ledger.set_meta("demo_seed", fingerprint)
    return True
