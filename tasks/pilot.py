"""The pilot cohort (policy `pilot`, docs/controls.md): in send and draft mode only the cohort's
touches go live; everyone else's are rendered, written as .eml files and kept in the dry-run
namespace of the outbox, as a dry run would. The cohort is the customers the policy names, its
segments, and a percentage of all customers by a stable hash of the customer id (the same customers
every day, whatever else changes)."""

from __future__ import annotations

import pandas as pd

from arflow.policy import Policy


def cohort(frame: pd.DataFrame, policy: Policy, mode: str) -> set[str] | None:
    """The customer ids that get real sends today, from a frame with customer_id (and segment);
    None where everyone does (no pilot, or a dry run, where nobody does)."""
    pilot = policy.pilot
    if not pilot.enabled or mode == "dry-run" or frame.empty:
        return None
    people = frame.drop_duplicates("customer_id")
    segments = people["segment"] if "segment" in people else pd.Series(None, index=people.index)
    return {str(c) for c, s in zip(people["customer_id"], segments)
            if pilot.includes(str(c), s if isinstance(s, str) else None)}


def history(live: pd.DataFrame, dry: pd.DataFrame, members: set[str] | None) -> pd.DataFrame:
    """The touch history the planner reads: the cohort's live touches and everyone else's dry-run ones
    (a customer outside the pilot moves through the cadence as in a dry run)."""
    if members is None:
        return live
    return pd.concat([live[live["customer_id"].isin(members)], dry[~dry["customer_id"].isin(members)]],
                     ignore_index=True)


def summary(actions: pd.DataFrame, members: set[str] | None, enabled: bool) -> dict:
    """Both halves of the day for the run's JSON and artifacts: customers and messages live, and in dry run."""
    if actions.empty:
        customers = set()
        messages = pd.DataFrame(columns=["customer_id"])
    else:
        customers = set(actions["customer_id"].astype(str))
        messages = actions.drop_duplicates(["customer_id", "channel"])[["customer_id"]]
    live = customers if members is None else customers & members
    is_live = messages["customer_id"].astype(str).isin(live)
    return {"enabled": bool(enabled and members is not None), "live_customers": len(live),
            "dry_run_customers": len(customers - live), "live_messages": int(is_live.sum()),
            "dry_run_messages": int((~is_live).sum())}
