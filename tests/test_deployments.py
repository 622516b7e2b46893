"""Every deployment in prefect.yaml points at a flow that imports, with parameters it accepts."""

import importlib.util
import inspect

import pytest
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


def _flows() -> dict:
    """Every flow object of the flows package, by its name."""
    import importlib
    import pkgutil

    import flows

    found = {}
    for info in pkgutil.iter_modules(flows.__path__):
        mod = importlib.import_module(f"flows.{info.name}")
        found.update({obj.name: obj for obj in vars(mod).values() if isinstance(obj, Flow)})
    return found


def test_every_deployment_parameter_has_a_description_and_modes_are_choices():
    cfg = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for dep in cfg["deployments"]:
        flow = _load(dep["entrypoint"])
        props = flow.parameters.model_dump()["properties"]
        missing = [name for name, p in props.items() if not p.get("description")]
        assert not missing, f"{dep['name']}: parameters without a description in the form: {missing}"
        if "mode" in props:
            allowed = ["dry-run"] if dep["name"] == "backfill" else ["dry-run", "draft", "send"]
            assert props["mode"]["enum"] == allowed, (dep["name"], props["mode"])


def test_deployments_pull_into_the_project_folder_named_by_a_variable():
    cfg = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pull, upgrade = cfg["pull"]
    assert upgrade == {"flows.deploy_steps.upgrade_ledger": {}}  # after the folder: the checkout's ledger schema
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ prefect.variables.arflow_home }}"
    (build,) = cfg["build"]
    assert "flows.deploy_steps.ensure_home_variable" in build
    for dep in cfg["deployments"]:
        for trigger in dep.get("triggers") or []:
            assert trigger.get("name"), dep["name"]


def test_the_alert_automation_covers_every_flow():
    from arflow.alerts import FLOWS

    assert set(_flows()) == set(FLOWS)


def test_run_names_say_what_a_run_is(monkeypatch):
    names = {n: f.flow_run_name for n, f in _flows().items()}
    assert all(names.values()), [n for n, v in names.items() if not v]

    import prefect.runtime.flow_run as runtime

    def name_of(flow_name, **params):  # what prefect.runtime reads in a run: its parameters
        monkeypatch.setitem(runtime.FIELDS, "parameters", lambda: params)
        return names[flow_name]()

    assert name_of("daily_ar", as_of="2026-11-23", mode="send") == "daily-ar 2026-11-23 send"
    assert name_of("payment_checkpoint", as_of="2026-11-23", mode="dry-run") == "payment-checkpoint 2026-11-23 dry-run"
    assert name_of("backfill", start="2026-10-01", end="2026-10-31") == "backfill 2026-10-01..2026-10-31"
    assert name_of("collections_brief", as_of="2026-11-23") == "collections-brief 2026-11-23"
    assert name_of("reply_triage", as_of="2026-11-23", replies_from="imap") == "reply-triage 2026-11-23"
    assert name_of("late_lane", as_of="2026-11-23", mode="draft") == "late-lane 2026-11-23 draft"
    today = name_of("daily_ar")  # no as_of: today in the company's timezone, as the flow's default
    assert today.startswith("daily-ar 20") and today.endswith(" dry-run")


def test_a_slack_webhook_that_could_never_post_is_refused():
    import pytest

    from arflow.alerts import check_slack_webhook

    check_slack_webhook("https://hooks.slack.com/services/T0001/B0001/abcDEF123")
    for bad in ("https://example.com/x", "http://hooks.slack.com/services/T0/B0/x", "https://hooks.slack.com/services/T0",
                "hooks.slack.com/services/T0/B0/x", ""):
        with pytest.raises(ValueError, match="Slack incoming webhook"):
            check_slack_webhook(bad)


def test_the_command_line_answers_help_and_argument_errors_without_the_heavy_libraries():
    """`arflow --help` and a bad argument must not pay for pandas, SQLAlchemy, Prefect or Great
    Expectations (they took 1.8 s of every such call): checked by what the process imported."""
    import subprocess
    import sys

    probe = ("import sys; sys.argv = ['arflow'] + sys.argv[1:]\ncode = 0\n"
             "try:\n    from arflow.cli import main; main()\nexcept SystemExit as e:\n    code = e.code\n"
             "heavy = sorted(m for m in ('pandas', 'sqlalchemy', 'prefect', 'great_expectations') if m in sys.modules)\n"
             "print('HEAVY=' + ','.join(heavy), 'EXIT=%s' % code)\n")
    for args in (["--help"], ["run", "--mode", "bogus"], ["run", "--source", "nowhere"], ["decide", "1", "maybe"],
                 ["backfill", "--from", "2026-11-30", "--to", "2026-11-01"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
        last = done.stdout.strip().splitlines()[-1]
        assert last.startswith("HEAVY= "), (args, last, done.stderr[-500:])
        assert last.endswith("EXIT=0" if args == ["--help"] else "EXIT=2"), (args, last)


def test_the_source_parameter_is_a_pattern_the_server_checks():
    """Every flow that takes a source shows the same pattern in its form: the spellings arflow opens
    pass, the ones it cannot open are refused when the run is created (jsonschema, as the server)."""
    import jsonschema

    from connectors.systems import BILLING_SYSTEMS, CRM_SYSTEMS

    with_source = {name: f for name, f in _flows().items() if "source" in f.parameters.model_dump()["properties"]}
    assert {"daily_ar", "payment_checkpoint", "backfill", "reply_triage"} <= set(with_source)
    good = ["demo", "csv:/srv/export", "csv:data/x", *BILLING_SYSTEMS, *(f"{b}+{c}" for b in BILLING_SYSTEMS
                                                                         for c in CRM_SYSTEMS), "demo+salesforce"]
    bad = ["quickbook", "csv:", "csv", "quickbooks+zendesk", "salesforce", "quickbooks+", " demo", "Xero"]
    for name, f in with_source.items():
        schema = f.parameters.model_dump()["properties"]["source"]
        for spec in good:
            jsonschema.validate(spec, schema)
        for spec in bad:
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(spec, schema)
