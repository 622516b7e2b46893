"""The policy simulator (docs/simulator.md): a simulated portfolio, day by day, through the
code the deployments run.

Each simulated day: the world bills and its customers act (connectors/simulated.py); the clerk
records what customers said (disputes, promises); on business days ``payment_checkpoint`` and then
``daily_ar`` run, in send mode, as their flow bodies call their tasks (the same task functions,
called as plain functions through tasks/recipe.py, the steps the flows run, so that a year does not
cost a year of Prefect task runs); the world receives what was delivered; the clerk settles the
decisions the run opened. Metrics come from the world's truth and the ledger (tasks/simulation.py).

Great Expectations suites cost about 0.35 s each whatever the frame's size (seven a business day,
about a tenth of a year's simulation if they ran every day), so the simulator runs them on the
first business day and the first business day of each quarter (a spot check whose quarantine counts
are reported: the world's records are well-formed by construction) and switches them off on the
other days.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from arflow import businessdays as bd
from arflow.config import Settings
from arflow.policy import Policy, load_policy
from connectors.ledger.store import Ledger
from connectors.simulated import SimulatedWorld, load_behaviour
from flows.daily_ar import delivery_context
from flows import prefect_tasks as t
from tasks import recipe
from tasks import simulation as metrics
from tasks.decisions import open_decisions, settle
from tasks.delivery import Channels
from tasks.quality import suites_off
from tasks.recipe import RunContext

MODE = "send"      # the live path: delivery verifies at the source, charges, opens decisions
CLERK = "simulated-clerk"
LANES = ("current", "early", "late", "critical")
BUILTIN = ("default", "static", "silent")


def resolve_policy(name: str, behaviour: dict, settings: Settings | None = None) -> Policy:
    """`default`: the policy file in use; `static`, `silent`: its settings with the steps that
    simulation.yaml gives; anything else: a policy file path."""
    settings = settings or Settings.from_env()
    if name not in BUILTIN:
        return load_policy(name)
    base = load_policy(settings.policy_path)
    if name == "default":
        return base
    steps = behaviour["policies"].get(name)
    if steps is None:
        raise ValueError(f"simulation.yaml has no policy {name!r}")
    return Policy.model_validate({**base.model_dump(), "version": f"{base.version}+{name}", "steps": steps})


class _Slack:
    def __init__(self, world: SimulatedWorld):
        self.world = world

    def send(self, text: str) -> None:
        self.world.post(text)


def simulate(*, days: int, customers: int, policy: str = "default", seed: int = 1, scenario: str = "central",
             start: dt.date = dt.date(2026, 1, 5), behaviour_path: str | None = None, workdir: str | None = None,
             series: bool = True, model: str | None = None, observe=None) -> dict:
    """One policy, one scenario: `days` calendar days from `start`. Returns its metrics.
    `model="fake"`: the policy scores with Claude through the real SDK against the recording fake
    (connectors/fake_anthropic.py), so the model's calls and cost per invoice per day are reported.
    The fake's answers (it softens long-standing punctual customers) are not a model's judgement:
    with it, read the cost, not the behavioural numbers."""
    if days < 1:
        raise ValueError("--days must be at least 1")
    behaviour = load_behaviour(behaviour_path)
    settings = Settings.from_env()
    pol = resolve_policy(policy, behaviour, settings)
    world = SimulatedWorld(customers=customers, start=start, seed=seed, behaviour=behaviour, scenario=scenario)
    began = time.perf_counter()
    usage = {"invoice_days": 0}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, _model(model, pol) as llm:
        ledger = Ledger(f"sqlite:///{Path(tmp) / 'ledger.db'}")
        settings = Settings(**{**settings.__dict__, "data_dir": Path(tmp)})
        channels = Channels(mailer=world, slack=_Slack(world), billing=world, mail_from="ar@sim.example")
        tracker = metrics.Tracker(start=start, warm_up_days=int(behaviour["assumptions"]["warm_up_days"]))
        spot = {"days": 0, "quarantined": 0}
        seen: dict = {}
        quarter = None
        for k in range(days):
            day = start + dt.timedelta(days=k)
            world.start_day(day)
            _clerk_records(world, ledger)
            if bd.company_business_day(day, pol.company_country):
                this_quarter = (day.year, (day.month - 1) // 3)
                check, quarter = this_quarter != quarter, this_quarter
                if check:
                    spot["days"] += 1
                    q, n = _run_day(world, ledger, pol, settings, channels, day, llm, seen)
                    spot["quarantined"] += q
                else:
                    with suites_off():
                        _, n = _run_day(world, ledger, pol, settings, channels, day, llm, seen)
                usage["invoice_days"] += n
                _clerk_decides(world, ledger, day)
            world.receive(ledger.delivered_on(day), ledger.plan_schedule(day), ledger.write_offs(), day)
            if observe is not None and "planned" in seen:
                observe(day, ledger, seen.pop("planned"))
            tracker.end_of_day(world, day)
        seconds = time.perf_counter() - began
        result = metrics.summarize(world, ledger, tracker, pol, behaviour, days=days, start=start, series=series)
    result.update({"policy": policy, "policy_version": pol.version, "scenario": scenario, "seed": seed,
                   "days": days, "customers": customers, "start": start.isoformat(),
                   "behaviour_version": behaviour["version"], "seconds": round(seconds, 1),
                   "suite_spot_checks": spot, "llm": _llm_report(llm, usage["invoice_days"])})
    return result


class _model:
    """The model of a simulated policy: None (rules), or "fake" (the recording fake on a local port)."""

    def __init__(self, kind: str | None, policy: Policy):
        if kind not in (None, "fake"):
            raise ValueError(f"--model must be fake (or left out), got {kind!r}")
        self.kind, self.policy, self.fake = kind, policy, None

    def __enter__(self):
        if self.kind is None:
            return None
        from connectors.fake_anthropic import FakeAnthropic
        from connectors.llm import Claude

        self.fake = FakeAnthropic().__enter__()
        settings = self.policy.llm if self.policy.llm.enabled else self.policy.llm.model_copy(update={"enabled": True})
        return Claude.connect(settings, api_key="sk-simulated", base_url=self.fake.url, run_id="simulation")

    def __exit__(self, *exc):
        if self.fake is not None:
            self.fake.__exit__(*exc)


def _llm_report(llm, invoice_days: int) -> dict | None:
    if llm is None:
        return None
    totals = llm.totals()
    return {**totals, "model": llm.model_for("score"), "answers": "recording fake (cost only)",
            "invoice_days": invoice_days,
            "calls_per_invoice_day": round(totals["llm_calls"] / invoice_days, 5) if invoice_days else 0.0,
            "cost_per_invoice_day_usd": round(totals["cost_usd"] / invoice_days, 7) if invoice_days else 0.0}


def _run_day(world: SimulatedWorld, ledger: Ledger, policy: Policy, settings: Settings, channels: Channels,
             day: dt.date, llm=None, seen: dict | None = None) -> tuple[int, int]:
    """payment_checkpoint then daily_ar for `day`: the flows' own steps (tasks/recipe.py), called as
    plain functions. Returns how many rows the hops quarantined, and how many open invoices were scored."""
    steps = recipe.plain(t)

    def context(run_id: str) -> RunContext:
        return RunContext(settings=settings, policy=policy, ledger=ledger, source=world, as_of=day, run_id=run_id,
                          mode=MODE, channels=channels, run_dir=settings.data_dir / "simulated-runs" / day.isoformat())

    ctx = context(f"sim-{day.isoformat()}-checkpoint")
    ledger.start_run(ctx.run_id, "payment_checkpoint", day, world.name, MODE, policy.version)
    paid = recipe.apply_payments(steps, ctx)
    delivery = delivery_context(ledger, channels, policy, ctx.run_id, day, MODE, world, settings)
    steps.deliver_touches(delivery, "paid")
    ledger.finish_run(ctx.run_id, "completed", {"simulated": True})
    quarantined = len(paid.quarantined) + len(paid.extracted.quarantine)

    ctx = context(f"sim-{day.isoformat()}-daily")
    ledger.start_run(ctx.run_id, "daily_ar", day, world.name, MODE, policy.version)

    def before_scoring():
        if llm is not None:
            llm.as_of, llm.run_id = day, ctx.run_id

    planned = recipe.plan_day(steps, ctx, llm, before_scoring=before_scoring)
    if seen is not None:
        seen["planned"] = planned.planned.frame
    delivery = delivery_context(ledger, channels, policy, ctx.run_id, day, MODE, world, settings)
    delivery.llm = llm
    delivery.cohort = planned.cohort
    for lane in LANES:  # as the lane subflows (flows/lanes.py), without .eml files
        recipe.lane(steps, lane, planned.actions, planned.planned.frame, ledger, MODE, ctx.run_id, day, delivery)
    steps.follow_up_owners(delivery)
    ledger.finish_run(ctx.run_id, "completed", {"simulated": True})
    return quarantined + planned.quarantined(), int(len(planned.scored.frame))


def _clerk_records(world: SimulatedWorld, ledger: Ledger) -> None:
    """What customers said, recorded as a clerk records it (the rows of `arflow dispute open`,
    `arflow dispute resolve` and `arflow promise`)."""
    said = world.take_clerk_records()
    with ledger.transaction() as conn:
        for inv, day in said.disputes_open:
            row = {"invoice_id": inv.id, "customer_id": inv.customer.id, "opened_on": day, "reason": "simulated"}
            ledger.record_named("Dispute", row, "dispute.opened", CLERK, inv.id, conn)
        for inv, day in said.disputes_resolve:
            ledger.resolve_dispute(inv.id, CLERK, day, conn=conn)
        for inv, day, promised in said.promises:
            row = {"invoice_id": inv.id, "customer_id": inv.customer.id, "recorded_on": day,
                   "promised_date": promised, "note": "simulated reply"}
            ledger.record_named("PromiseToPay", row, "promise.recorded", CLERK, inv.id, conn)


def _clerk_decides(world: SimulatedWorld, ledger: Ledger, day: dt.date) -> None:
    """The clerk works the decision queue the same day (`arflow decide`); the next run carries out."""
    for d in open_decisions(ledger).itertuples():
        verdict, choice = world.choose(d.kind, d.customer_id)
        settle(ledger, int(d.id), verdict, by=CLERK, on=day, choice=choice)


# ---- several runs ----------------------------------------------------------------------------------
def _one(kwargs: dict) -> dict:
    return simulate(**kwargs)


def run_many(runs: list[dict], workers: int = 2) -> list[dict]:
    """Independent simulations, in parallel processes (each has its own world and ledger). Spawned,
    not forked: a fork of a process whose OpenMP pool is running (scikit-learn's gradient boosting
    in the late-payment model) crashes the child."""
    import multiprocessing

    if workers <= 1 or len(runs) == 1:
        return [simulate(**r) for r in runs]
    with ProcessPoolExecutor(max_workers=min(workers, len(runs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_one, runs))


def compare(*, policies: list[str], scenarios: list[str], workers: int = 2, **common) -> dict:
    runs = [{**common, "policy": p, "scenario": s} for s in scenarios for p in policies]
    results = run_many(runs, workers)
    return metrics.comparison(results, policies, scenarios)

