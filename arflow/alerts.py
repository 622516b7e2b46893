"""`arflow setup-alerts`: a Prefect Automation that notifies a person when any arflow flow run
fails or crashes (deployed runs; flows/hooks.py covers local runs).

The notification goes through a Prefect notification block: the Slack webhook block
`arflow-slack` by default (created from --slack-webhook), or any notification block given as
TYPE/NAME (`sendgrid-email/ops` for e-mail, `microsoft-teams-webhook/ar`, ...). Running the command
again replaces the automation, so there is never a second one.
"""

from __future__ import annotations

import re

from prefect.automations import Automation, EventTrigger, SendNotification

SLACK_WEBHOOK = re.compile(r"^https://hooks\.slack(?:-gov)?\.com/services/[A-Z0-9]+/[A-Z0-9]+/[A-Za-z0-9]+/?$", re.I)
NAME = "arflow: failed or crashed flow run"
# Every flow of arflow (a test checks this against the flows package).
FLOWS = ["daily_ar", "payment_checkpoint", "reply_triage", "collections_brief", "backfill", "review_decision",
         "current_lane", "early_lane", "late_lane", "critical_lane"]
EVENTS = {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
SUBJECT = "arflow: {{ flow.name }} run {{ flow_run.name }} is {{ flow_run.state.name }}"
BODY = ("arflow: the flow run {{ flow.name }}/{{ flow_run.name }} is {{ flow_run.state.name }}: "
        "{{ flow_run.state.message }}. Parameters: {{ flow_run.parameters }}. {{ flow_run|ui_url }}")


def automation(block_document_id) -> Automation:
    return Automation(
        name=NAME,
        description="Created by `arflow setup-alerts`: tells a person when an arflow flow run fails or crashes.",
        trigger=EventTrigger(
            expect=EVENTS,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOWS},
            posture="Reactive", threshold=1),
        actions=[SendNotification(block_document_id=block_document_id, subject=SUBJECT, body=BODY)])


def check_slack_webhook(url: str) -> None:
    """Refuse a URL the Slack block could never post to (Prefect's notifier would fail later with
    "no service(s) to notify"): a Slack incoming webhook, https://hooks.slack.com/services/T.../B.../...."""
    from apprise import Apprise

    if not SLACK_WEBHOOK.match(url or "") or not Apprise().add(url):
        raise ValueError("--slack-webhook must be a Slack incoming webhook URL, "
                         "https://hooks.slack.com/services/T.../B.../... (for another notifier, save a Prefect "
                         "notification block and pass --block TYPE/NAME)")


def automation_in_effect() -> bool:
    """Whether the Prefect API this process reports to has the arflow alert automation, enabled:
    then it alerts on every failed or crashed arflow run, and the flows' own hooks stay quiet."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return any(a.enabled for a in client.read_automations_by_name(NAME))


def setup_alerts(block: str = "slack-webhook/arflow-slack", slack_webhook: str | None = None) -> dict:
    """Create (or replace) the automation. With slack_webhook, the `arflow-slack` block is saved
    first with that URL. Returns the automation's id and the block it notifies through."""
    from prefect.blocks.core import Block
    from prefect.blocks.notifications import SlackWebhook
    from prefect.client.orchestration import get_client

    if slack_webhook:
        check_slack_webhook(slack_webhook)
        SlackWebhook(url=slack_webhook).save("arflow-slack", overwrite=True)
        block = "slack-webhook/arflow-slack"
    if "/" not in block:
        raise ValueError(f"--block must be TYPE/NAME (e.g. slack-webhook/arflow-slack), got {block!r}")
    try:
        notifier = Block.load(block)
    except ValueError:
        raise ValueError(f"no notification block {block!r}: create it in the Prefect UI, or pass --slack-webhook URL") \
            from None
    if not hasattr(notifier, "notify"):
        raise ValueError(f"block {block!r} is not a notification block")
    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(NAME):
            client.delete_automation(old.id)
    created = automation(notifier._block_document_id).create()
    return {"automation_id": str(created.id), "name": NAME, "notifies_through": block, "on": sorted(EVENTS),
            "flows": FLOWS}
