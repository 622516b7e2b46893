import pytest

from arflow.config import ROOT
from arflow.policy import PolicyError, load_policy

BASE = (ROOT / "policy.yaml").read_text()


def _load(tmp_path, text):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return load_policy(p)


def test_default_policy_loads_with_the_field_practice(policy):
    names = {s.name: s for s in policy.steps}
    assert names["pre_due_reminder"].business_days_before_due == 3
    assert (names["nudge"].day, names["follow_up"].day, names["owner_loop_in"].day) == (1, 7, 10)
    assert names["service_pause_warning"].approval and "cfo" in names["service_pause_warning"].recipients
    assert all(names[n].approval for n in ("service_pause", "finance_owner_call", "payment_plan_or_write_off"))
    assert policy.grace_business_days == 2
    assert (policy.statements.with_reminder, policy.statements.day_of_month, policy.statements.attach) == \
        (False, 1, "pdf")   # statements with reminders are off unless the policy turns them on


@pytest.mark.parametrize("change,message", [
    (("early_from: 1", "early_from: 20"), "lane boundaries"),
    (("grace_business_days: 2", "grace_business_days: -1"), "grace_business_days"),
    (("company_country: US", "company_country: XX"), "company_country"),
    (("tolerance: \"1.00\"", "tolerance: \"one\""), "tolerance"),
    (("channel: slack", "channel: pigeon"), "steps"),
    (("version: \"2026.12-3\"\n", ""), "version"),
    (("roles: [ar_team, finance_lead]}", "roles: [ar_team, controller]}"), "roles that approvals.roles does not define"),
    (('USD: "10000.00", EUR', 'USD: "10000.001", EUR'), "up_to USD"),
    (("\n  percent: 0 ", "\n  percent: 150 "), r"pilot\.percent"),
    (("reply_to: ar@yourco.example", "reply_to: \"ar@yourco.example, boss@yourco.example\""), "reply_to"),
    (("day: 7, channel: email", "day: 20, channel: email"), "falls in lane 'late'"),
    (('JPY: "500"', 'JPY: "5.5"'), "minimum_amount JPY"),
    (("day_of_month: 1 ", "day_of_month: 31 "), r"statements\.day_of_month"),
    (("attach: pdf ", "attach: docx "), r"statements\.attach"),
    (("with_reminder: false ", "with_reminder: monthly "), r"statements\.with_reminder"),
])
def test_bad_policy_files_fail_with_the_field_named(tmp_path, change, message):
    with pytest.raises(PolicyError, match=message):
        _load(tmp_path, BASE.replace(*change, 1))


def test_unknown_keys_are_refused(tmp_path):
    with pytest.raises(PolicyError, match="grace_days"):
        _load(tmp_path, BASE + "\ngrace_days: 3\n")


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="not valid YAML"):
        _load(tmp_path, "steps: [\n")
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "none.yaml")
