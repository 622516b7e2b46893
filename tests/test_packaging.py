"""The built wheel carries every data file the code reads, and none of the tests (issue 20).

Builds the wheel from a copy of the checkout (`pip wheel --no-deps`), lists it, installs it with
`pip install --no-deps --target` and runs the installed code from a folder outside the checkout:
the default policy, the hops' GX suites, the prompts (rendered messages), the HTML templates, the
field maps, the simulator's behaviour, the ledger's migrations. Every file it reads must come from
the installed copy. No Prefect server is started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("arflow", "flows", "tasks", "connectors")
# The checkout's top-level defaults the build copies into arflow/defaults/ (setup.py's DEFAULTS).
DEFAULT_FILES = ("policy.yaml", "salesforce_fields.yaml", "hubspot_fields.yaml", "simulation.yaml")
DEFAULT_DIRS = ("expectations", "prompts")
IGNORED = shutil.ignore_patterns(".git", ".venv", "data", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                 ".pytest_cache", ".hypothesis", ".import_linter_cache", "out", "*.eml")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def expected_data() -> dict[str, Path]:
    """Name in the wheel -> the checkout's file it must equal byte for byte."""
    want = {f"arflow/defaults/{name}": ROOT / name for name in DEFAULT_FILES}
    for folder in DEFAULT_DIRS:
        want.update({f"arflow/defaults/{p.relative_to(ROOT).as_posix()}": p for p in _files(ROOT / folder)})
    for p in [*_files(ROOT / "arflow" / "templates"), ROOT / "connectors" / "ledger" / "alembic.ini",
              *_files(ROOT / "connectors" / "ledger" / "migrations")]:
        want[p.relative_to(ROOT).as_posix()] = p
    return want


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the checkout (the build writes build/ and *.egg-info beside
    its sources, and the checkout stays as it was)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORED)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q", "-w", str(tmp / "dist"), str(src)]
    try:  # the venv's own setuptools where it is recent enough: no download, a few seconds
        import setuptools

        if int(setuptools.__version__.split(".")[0]) >= 77:
            cmd.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    subprocess.run(cmd, check=True, timeout=300, capture_output=True)
    (built,) = (tmp / "dist").glob("arflow-*.whl")
    return built


def test_the_wheel_carries_the_data_files_and_no_tests(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        missing = sorted(set(expected_data()) - names)
        assert not missing, f"the wheel lacks {missing}"
        differ = sorted(name for name, path in expected_data().items() if z.read(name) != path.read_bytes())
        assert not differ, f"the wheel's copies differ from the checkout's files: {differ}"
        stale = sorted(n for n in names if n.startswith("arflow/defaults/") and n not in expected_data())
        assert not stale, f"the wheel carries defaults the checkout does not have: {stale}"
    tops = {n.split("/")[0] for n in names}
    assert tops == {*PACKAGES, "arflow-0.1.0.dist-info"}, tops
    assert not [n for n in names if "tests/" in n or "/fixtures/" in n or n.split("/")[-1].startswith("test_")]
    # every module of the four packages is in it
    modules = {p.relative_to(ROOT).as_posix() for d in PACKAGES for p in (ROOT / d).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert not sorted(modules - names)


RUN = r'''
import datetime as dt, json, os, shutil, sys
from pathlib import Path

site = Path(sys.argv[1]).resolve()
here = Path.cwd()
read = {}
def mine(label, path):
    read[label] = str(Path(path).resolve())

import arflow, connectors, flows, tasks
for m in (arflow, connectors, flows, tasks):
    mine(m.__name__, m.__file__)
from arflow import resources
from arflow.config import EXPECTATIONS_DIR, PROMPTS_DIR, Settings
from arflow.policy import load_policy
assert not resources.IN_CHECKOUT
settings = Settings.from_env()
mine("policy.yaml", settings.policy_path)
policy = load_policy(settings.policy_path)
data_dir = str(settings.data_dir)

# the pure hops over the demo's CSVs: every hop's GX suite from expectations/, messages from prompts/
from arflow import demo
from connectors.sources import CsvSource
from tasks import hops, quality
from tasks.touches import environment, outbox_rows
as_of = dt.date(2026, 11, 23)
folder = demo.generate(here / "demo", anchor=as_of)
src = CsvSource(folder)
import pandas as pd
empty = pd.DataFrame(columns=["invoice_id", "customer_id", "payment_id", "amount_minor", "paid_date", "due_date"])
inputs = hops.Inputs(source=src.name, invoices=src.invoices(), customers=src.customers(), payments=src.payments(),
                     aging_report=src.aging_report(), reflected_payment_ids=src.reflected_payment_ids(), stops={},
                     history=empty, applied=empty, credit_notes=src.credit_notes(),
                     payment_schedule=src.payment_schedule(), as_of=as_of)
extracted, customers = hops.extract_aging(inputs, as_of, policy)
rec, rec_hop = hops.reconcile_aging(extracted.frame, inputs, policy)
enriched = hops.enrich_context(extracted.frame, customers, inputs, as_of, policy)
scored = hops.score(enriched.frame, policy)
planned, actions = hops.plan_actions(scored.frame, as_of, policy, mismatched=set(rec.mismatched_customers),
                                     done_keys=set(), touches=None, installments=None)
rows = outbox_rows(actions, planned.frame, mode="dry-run", run_id="t", as_of=as_of, policy=policy)
emails = rows[rows["channel"] == "email"]
assert len(emails) > 0 and emails["subject"].str.len().min() > 0, rows.head()
for hop in ("extract_aging", "reconcile", "enrich_context", "score", "plan_actions", "outcomes"):
    quality.load_suite_dict(hop)
mine("expectations", EXPECTATIONS_DIR / "score.json")
mine("prompt", environment("en").get_template("email_firm.j2").filename)
mine("prompt de", environment("de").get_template("email_firm.j2").filename)
from tasks.ai_score import prompt_version, system_prompt_of
prompt_version(); system_prompt_of("triage_replies.j2")
mine("score prompt", PROMPTS_DIR / "score_risk.j2")

# the HTML templates: a statement rendered, the dashboard's page found
from tasks import dashboard, statement
page = statement.render_html(statement.Statement("C-1", "Acme", "Sue Smith", "en", as_of, as_of.replace(day=1)))
assert "Acme" in page
from jinja2 import Environment, FileSystemLoader
mine("statement template", resources.TEMPLATES_DIR / "statement.html.j2")
from arflow.money import format_amount
env = Environment(loader=FileSystemLoader(dashboard.TEMPLATES))
env.filters["money"] = format_amount
mine("dashboard template", env.get_template("dashboard.html.j2").filename)  # found and compiled

# the field maps, the simulator's behaviour and its model stand-in, the ledger's migrations
from connectors import hubspot, salesforce, simulated
salesforce.load_field_map(); hubspot.load_field_map()
mine("salesforce_fields.yaml", salesforce.default_path("salesforce_fields.yaml"))
mine("hubspot_fields.yaml", hubspot.field_map_path())
simulated.load_behaviour()
mine("simulation.yaml", simulated.DEFAULT_BEHAVIOUR)
from connectors.fake_anthropic import FakeAnthropic
with FakeAnthropic():
    pass
from connectors.ledger.store import MIGRATIONS, Ledger
Ledger(f"sqlite:///{here / 'ledger.db'}")
mine("migrations", MIGRATIONS)

# ARFLOW_POLICY still wins: an edited copy outside the package
edited = here / "my-policy.yaml"
import yaml
raw = yaml.safe_load(Path(settings.policy_path).read_text())
edited.write_text(yaml.safe_dump({**raw, "version": f"edited-{raw['version']}"}))
os.environ["ARFLOW_POLICY"] = str(edited)
override = Settings.from_env().policy_path
print(json.dumps({"read": read, "data_dir": data_dir, "override": str(override),
                  "override_version": load_policy(override).version, "emails": len(emails)}))
'''


@pytest.mark.slow
def test_the_installed_wheel_runs_from_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "-q", "--target", str(site),
                    str(wheel)], check=True, timeout=300, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    # the installed copy first; the dependencies from this venv's site-packages (sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARFLOW_")}
    env.update(PYTHONPATH=str(site), GX_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", RUN, str(site)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    outside = {label: path for label, path in out["read"].items() if not Path(path).is_relative_to(site.resolve())}
    assert not outside, f"read from outside the installed copy: {outside}"
    assert Path(out["read"]["policy.yaml"]) == site.resolve() / "arflow" / "defaults" / "policy.yaml"
    assert Path(out["read"]["prompt de"]).parent.name == "de"
    assert Path(out["data_dir"]) == work.resolve() / "data"  # ./data where it runs, not site-packages
    assert Path(out["override"]) == work / "my-policy.yaml" and out["override_version"].startswith("edited-")
    assert out["emails"] > 0
