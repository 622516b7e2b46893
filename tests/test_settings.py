"""One declaration per ARFLOW_* variable (arflow/settings.py): every name the code reads is declared,
described in docs/configuration.md, and declared with the default the code falls back to;
`arflow config` shows what is in effect with secrets masked and names a bad value."""

import ast
import json
import os
from pathlib import Path

import pytest

from tests.cli import arflow, env_delta
from pydantic import TypeAdapter

from arflow import settings as s

ROOT = Path(__file__).resolve().parents[1]
CODE = [f for d in ("arflow", "flows", "tasks", "connectors") for f in (ROOT / d).rglob("*.py")]


def _reads():
    """(name, the code's fallback text or None, file) for every ARFLOW_* literal the code passes to a call
    or subscripts with."""
    out = []
    for f in CODE:
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.Call) and n.args and isinstance(n.args[0], ast.Constant) \
                    and isinstance(n.args[0].value, str) and n.args[0].value.startswith("ARFLOW_"):
                fallback = n.args[1].value if len(n.args) > 1 and isinstance(n.args[1], ast.Constant) else None
                out.append((n.args[0].value, fallback, f.relative_to(ROOT)))
            elif isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) \
                    and isinstance(n.slice.value, str) and n.slice.value.startswith("ARFLOW_"):
                out.append((n.slice.value, None, f.relative_to(ROOT)))
    return out


def test_every_variable_the_code_reads_is_declared_once():
    reads = _reads()
    assert len({name for name, *_ in reads}) > 50  # the scan sees the code's reads
    undeclared = sorted({f"{name} ({where})" for name, _, where in reads if name not in s.NAMES})
    assert not undeclared, f"declare these in arflow/settings.py: {undeclared}"
    names = [name for name, *_ in s.VARIABLES]
    assert len(names) == len(set(names))
    from connectors.systems import BILLING_SYSTEMS, CRM_SYSTEMS

    for system in (*BILLING_SYSTEMS, *CRM_SYSTEMS):
        assert f"ARFLOW_{system.upper()}_BLOCK" in s.NAMES, system


def test_declared_defaults_are_the_codes_fallbacks():
    declared = {s.PREFIX + name: (kind, default) for name, kind, default, _ in s.VARIABLES}
    differ = []
    for name, fallback, where in _reads():
        if fallback is None or name not in declared:
            continue
        kind, default = declared[name]
        if kind is s.SECRET:
            continue
        parsed = TypeAdapter(kind).validate_python(fallback) if fallback != "" or kind is str else None
        if parsed != default:
            differ.append(f"{name}: code {fallback!r} in {where}, declared {default!r}")
    assert not differ, differ


def test_every_declared_variable_is_documented():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(name for name in s.NAMES if name not in doc)
    assert not missing, f"describe in docs/configuration.md: {missing}"


def _config(*args, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("ARFLOW_")} | env
    return arflow(["config", *args], env_delta(full))


@pytest.mark.usefixtures("prefect_server")
def test_config_shows_what_is_in_effect_with_secrets_masked():
    done = _config("--json", ARFLOW_SMTP_HOST="mail.example.com", ARFLOW_SMTP_PASSWORD="hunter2-secret",
                   ARFLOW_DB_URL="postgresql+psycopg://ar:pw-in-url@db.example/ar", ARFLOW_XERO_DAY_RESERVE="800")
    assert done.returncode == 0, done.stderr
    assert "hunter2-secret" not in done.stdout + done.stderr and "pw-in-url" not in done.stdout + done.stderr
    rows = {r["variable"]: r for r in json.loads(done.stdout)}
    assert set(rows) == set(s.NAMES)
    assert rows["ARFLOW_SMTP_HOST"] == {**rows["ARFLOW_SMTP_HOST"], "value": "mail.example.com", "source": "environment"}
    assert rows["ARFLOW_SMTP_PASSWORD"]["value"] == "set (hidden)"
    assert rows["ARFLOW_STRIPE_API_KEY"]["value"] == "not set" and rows["ARFLOW_STRIPE_API_KEY"]["source"] == "default"
    assert rows["ARFLOW_DB_URL"]["value"] == "postgresql+psycopg://ar:***@db.example/ar"
    assert rows["ARFLOW_XERO_DAY_RESERVE"]["value"] == "800"
    assert rows["ARFLOW_SMTP_PORT"] == {**rows["ARFLOW_SMTP_PORT"], "value": "25", "source": "default"}
    table = _config(ARFLOW_SMTP_HOST="mail.example.com")
    line = next(ln for ln in table.stdout.splitlines() if "ARFLOW_SMTP_HOST" in ln)
    assert line.startswith("*") and "mail.example.com" in line


@pytest.mark.parametrize("name, value", [("ARFLOW_SMTP_PORT", "twenty-five"), ("ARFLOW_IMAP_SSL", "perhaps"),
                                         ("ARFLOW_HTTP_TIMEOUT", "soon")])
@pytest.mark.usefixtures("prefect_server")
def test_a_bad_value_is_refused_by_name_before_a_run_starts(name, value, tmp_path):
    done = _config("--check", **{name: value})
    assert done.returncode == 1 and done.stderr.startswith("arflow: error: invalid configuration") \
        and name in done.stderr, done.stderr
    run = arflow(["run", "--source", "demo", "--as-of", "2026-11-23"], {"ARFLOW_DATA_DIR": str(tmp_path), name: value})
    assert run.returncode == 1 and name in run.stderr and "Traceback" not in run.stderr, run.stderr[-1500:]
    assert not (tmp_path / "runs").exists()
