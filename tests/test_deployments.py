"""Every deployment in prefect.yaml points at a flow that imports, with parameters it accepts."""

import importlib.util
import inspect

import yaml
from prefect import Flow

from arflow.config import ROOT


def _load(entrypoint: str):
    path, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def test_every_deployment_points_at_a_flow():
    cfg = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert cfg["deployments"]
    for dep in cfg["deployments"]:
        flow = _load(dep["entrypoint"])
        assert isinstance(flow, Flow), dep["name"]
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(dep.get("parameters") or {}) <= accepted, dep["name"]


def test_daily_run_is_at_eight_on_business_days_in_a_timezone():
    cfg = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    daily = next(d for d in cfg["deployments"] if d["name"] == "daily-ar")
    (sched,) = daily["schedules"]
    assert sched["cron"] == "0 8 * * 1-5"
    from prefect.client.schemas.schedules import CronSchedule

    CronSchedule(cron=sched["cron"], timezone=sched["timezone"])  # validates both


def test_checkpoint_runs_before_the_daily_run_and_on_a_payment_event():
    cfg = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in cfg["deployments"]}
    cp = deps["payment-checkpoint"]
    assert cp["schedules"][0]["cron"] == "30 7 * * 1-5"
    (trigger,) = cp["triggers"]
    assert trigger["expect"] == ["arflow.payment.received"]
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    DeploymentEventTrigger(**{k: v for k, v in trigger.items() if k != "type"})  # a valid trigger
