"""Scoring with Claude through the real anthropic SDK against the local fake API (connectors/fake_anthropic.py):
the model's answers used where they pass the guardrails, the rules kept (and counted) where not,
the cache, the cost, and the API's failures."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from arflow import demo
from connectors.llm import Claude
from tasks import hops
from tasks.ai_score import SCORE_TOOL, eligible, model_score, prompt_version
from connectors.fake_anthropic import FakeAnthropic
from tests.anthropic_recorded import recorded
from tests.pipeline import inputs_from

AS_OF = dt.date(2026, 11, 23)
KEY = "sk-ant-test-0123456789abcdef"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    from arflow.config import ROOT
    from arflow.policy import load_policy

    policy = load_policy(ROOT / "policy.yaml")
    folder = demo.generate(tmp_path_factory.mktemp("demo") / "demo", anchor=AS_OF, seed=42)
    inputs = inputs_from(folder, AS_OF)
    ex, cust = hops.extract_aging(inputs, AS_OF, policy)
    en = hops.enrich_context(ex.frame, cust, inputs, AS_OF, policy)
    return hops.score(en.frame, policy).frame


@pytest.fixture
def fake():
    with FakeAnthropic() as f:
        yield f


def claude(policy, fake, **llm):
    settings = policy.llm.model_copy(update={"timeout_seconds": 2.0, "max_retries": 1, **llm})
    return Claude.connect(settings, api_key=KEY, base_url=fake.url, as_of=AS_OF, run_id="r1")


def cache_of(rows):
    return pd.DataFrame(rows).assign(id=range(len(rows)))


def test_model_scores_the_invoices_a_touch_can_reach_and_records_the_cost(policy, scored, fake):
    llm = claude(policy, fake)
    out, rows, stats = model_score(scored, policy, llm, as_of=AS_OF)
    mask = eligible(scored, policy)
    assert stats.eligible == int(mask.sum()) > 50
    assert stats.by_model == stats.eligible and not stats.fallback
    assert set(out.loc[mask, "scorer"]) == {"model"} and set(out.loc[~mask, "scorer"]) == {"rules"}
    # Held invoices (a dispute, a promise ...) are never sent to the model.
    sent = {f["invoice_id"] for r in fake.requests for f in _invoices_in(r)}
    held = scored[scored[["open_dispute", "promise_to_pay", "paused", "opt_out"]].any(axis=1)]
    assert len(held) and not sent & set(held["invoice_id"])
    # Batches of the policy's size, one forced tool call each, the fixed part marked for caching.
    assert len(fake.requests) == -(-stats.eligible // policy.llm.batch_size)
    r0 = fake.requests[0]
    assert r0["tool_choice"] == {"type": "tool", "name": "record_scores"} and r0["model"] == "claude-sonnet-4-5"
    assert r0["system"][0]["cache_control"] == {"type": "ephemeral"}
    # The second request reads the cached prefix; cost is priced from the policy's table.
    assert llm.calls[0]["cache_write_tokens"] > 0 and llm.calls[1]["cache_read_tokens"] > 0
    c = llm.calls[1]
    assert c["cost_micro_usd"] == round(c["input_tokens"] * 3 + c["output_tokens"] * 15
                                        + c["cache_read_tokens"] * 0.3 + c["cache_write_tokens"] * 3.75)
    assert all(c["prompt_version"] == prompt_version() and c["outcome"] == "ok" for c in llm.calls)
    # The long, punctual customers the fake softens really get the softer tone; the rules' are kept beside it.
    softened = out[(out["scorer"] == "model") & (out["tone"] != out["rules_tone"])]
    assert len(softened) and (softened["tone"] == "friendly").all()
    # The lane (tier) is the rules': the model never set it.
    pd.testing.assert_series_equal(out["lane"], scored["lane"])


def _invoices_in(request):
    import json

    text = request["messages"][0]["content"]
    return json.loads(text[text.index("["):])


def test_unchanged_inputs_are_not_asked_again_and_a_new_step_is(policy, scored, fake):
    llm = claude(policy, fake)
    _, rows, first = model_score(scored, policy, llm, as_of=AS_OF)
    n = len(fake.requests)
    out, rows2, again = model_score(scored, policy, llm, as_of=AS_OF + dt.timedelta(days=1), cache=cache_of(rows))
    assert again.cached == first.eligible and again.asked == 0 and len(fake.requests) == n
    assert (out["scorer"] != "rules_fallback").all()
    # One invoice's balance changed (a partial payment), and another reached its next cadence step.
    changed = scored.copy()
    el = changed[eligible(changed, policy)]
    paid_part = el.index[0]
    changed.loc[paid_part, "effective_balance_minor"] -= 100
    early = el[(el["lane"] == "early") & (el["days_past_due"] < 7)].index[0]
    changed.loc[early, "days_past_due"] = 7
    _, rows3, third = model_score(changed, policy, llm, as_of=AS_OF, cache=cache_of(rows))
    assert third.asked == 2
    assert {r["invoice_id"] for r in rows3} == set(changed.loc[[paid_part, early], "invoice_id"])
    # A cached score older than the policy allows is asked again.
    _, _, old = model_score(scored, policy, llm, as_of=AS_OF + dt.timedelta(days=policy.llm.rescore_after_days),
                            cache=cache_of(rows))
    assert old.cached == 0 and old.asked == first.eligible


def test_answers_past_the_guardrails_keep_the_rules_and_are_counted(policy, scored):
    def harsh(request, user):
        import json

        items = json.loads(user[user.index("["):])
        return {"scores": [{"invoice_id": f["invoice_id"], "risk_score": 90, "tone": "escalating", "escalation": "none",
                            "escalation_reason": "", "rationale": "pay now"} for f in items]}

    with FakeAnthropic({"record_scores": harsh}) as fake:
        out, _, stats = model_score(scored, policy, claude(policy, fake), as_of=AS_OF)
    mask = eligible(scored, policy)
    # Harsher than the rules' tone is refused; where the rules were already escalating, dropping their
    # escalation is refused.
    assert stats.by_model == 0 and sum(stats.fallback.values()) == stats.eligible
    assert stats.fallback["tone_harsher_than_rules"] > 0 and stats.fallback["escalation_dropped"] > 0
    assert set(out.loc[mask, "scorer"]) == {"rules_fallback"}
    pd.testing.assert_series_equal(out["tone"], scored["tone"])
    pd.testing.assert_series_equal(out["risk_score"], scored["risk_score"])


@pytest.mark.parametrize("fixture", ["malformed_scores", "refusal", "text_only"])
def test_malformed_refused_or_toolless_answers_fall_back(policy, scored, fake, fixture):
    fake.queue("body", recorded(fixture))
    llm = claude(policy, fake, batch_size=100)
    out, rows, stats = model_score(scored, policy, llm, as_of=AS_OF)
    first = min(100, stats.eligible)
    assert stats.fallback == {"invalid_or_refused": first}
    assert llm.calls[0]["outcome"] == ("refused" if fixture == "refusal" else "invalid")
    assert stats.by_model == stats.eligible - first  # the next batch was answered normally
    assert {r["invoice_id"] for r in rows}.isdisjoint(set(scored.loc[eligible(scored, policy)].iloc[:first]["invoice_id"]))


def test_overload_is_retried_by_the_sdk_then_answered(policy, scored, fake):
    fake.queue("error", recorded("overloaded_529"), status=529)
    fake.queue("error", recorded("rate_limit_429"), status=429)
    llm = claude(policy, fake, max_retries=2, batch_size=500)
    _, _, stats = model_score(scored, policy, llm, as_of=AS_OF)
    assert len(fake.requests) == 3 and stats.by_model == stats.eligible and not stats.fallback


@pytest.mark.slow
def test_overload_past_the_retries_and_timeouts_fall_back_without_leaking_the_key(policy, scored, fake, caplog):
    from connectors.llm import LlmUnavailable

    for _ in range(2):
        fake.queue("error", recorded("overloaded_529"), status=529)
    fake.queue("sleep", 3.0)  # the next batch outlasts the 2 s timeout (and its one retry sleeps too)
    fake.queue("sleep", 3.0)
    llm = claude(policy, fake, max_retries=1, batch_size=max(1, int(eligible(scored, policy).sum()) // 2 + 1))
    out, _, stats = model_score(scored, policy, llm, as_of=AS_OF)
    assert stats.fallback == {"unavailable": stats.eligible} and stats.by_model == 0
    assert [c["outcome"] for c in llm.calls] == ["unavailable", "unavailable"]
    pd.testing.assert_series_equal(out["tone"], scored["tone"])
    with pytest.raises(LlmUnavailable) as err:
        fake.queue("error", recorded("overloaded_529"), status=529)
        fake.queue("error", recorded("overloaded_529"), status=529)
        llm.ask("score", "v", "system", "[]", SCORE_TOOL, items=0, validate=lambda raw: raw)
    assert "529" in str(err.value) and "overloaded_error" in str(err.value) and KEY not in str(err.value)
    assert KEY not in caplog.text
