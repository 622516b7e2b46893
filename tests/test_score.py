import pandas as pd

from tasks.score import score


def _row(**kw):
    base = {"days_past_due": 20, "lane": "late", "effective_balance_minor": 50_000, "chronic_late": False,
            "at_risk": False, "segment": "standard", "high_arr": False, "first_time_late": False,
            "open_dispute": False, "owner_csm_email": "csm@example.com"}
    base.update(kw)
    return base


def _score(policy, **kw):
    return score(pd.DataFrame([_row(**kw)]), policy).iloc[0]


def test_deterministic(policy):
    df = pd.DataFrame([_row(), _row(lane="critical", days_past_due=80, chronic_late=True), _row(lane="early", days_past_due=3)])
    pd.testing.assert_frame_equal(score(df, policy), score(df.copy(), policy))


def test_risk_follows_the_documented_rules(policy):
    assert _score(policy)["risk_score"] == 45 + 3
    assert _score(policy, chronic_late=True)["risk_score"] == 45 + 3 + 15
    assert _score(policy, lane="critical", days_past_due=400, chronic_late=True, at_risk=True,
                  effective_balance_minor=10**8, open_dispute=True)["risk_score"] == 100
    assert _score(policy, lane="current", days_past_due=-5, first_time_late=False)["risk_score"] == 5


def test_tone_and_escalation(policy):
    assert tuple(_score(policy)[["tone", "escalation"]]) == ("firm", "none")
    assert tuple(_score(policy, segment="strategic")[["tone", "escalation"]]) == ("friendly", "owner")
    # Chronic late payers are not softened by the strategic rule.
    assert _score(policy, segment="strategic", chronic_late=True)["tone"] == "firm"
    # At-risk: never firm, the CSM is asked for a personal touch.
    assert tuple(_score(policy, at_risk=True, chronic_late=True)[["tone", "escalation"]]) == ("friendly", "csm")
    assert tuple(_score(policy, lane="critical", days_past_due=60)[["tone", "escalation"]]) == ("escalating", "finance")
