"""on_failure / on_crashed hooks: a run that fails or crashes tells a person, also when it runs
locally without a Prefect server's automations (`arflow setup-alerts` covers deployed runs).

Where the server has the alert automation (`arflow setup-alerts`), the automation alerts and these
hooks stay quiet: one failure, one alert. Otherwise the message goes to the Slack webhook (the
`arflow-slack` block, else ARFLOW_SLACK_WEBHOOK_URL); else an e-mail to the policy's finance team
through the configured SMTP server; else the log only.
The text names the flow, the run, the parameters' as_of and the state's message; never a secret.
"""

from __future__ import annotations

import logging

log = logging.getLogger("arflow.alerts")


def failure_text(flow_name: str, run_name: str, as_of, state_name: str, message: str) -> str:
    from arflow.safety import redact

    first = (message or "").strip().splitlines()[0][:300] if message and message.strip() else "no message"
    return redact(f"arflow: flow run {flow_name}/{run_name} (as_of {as_of}) is {state_name}: {first}")


def notify_failure(flow, flow_run, state) -> None:
    """Prefect state hook: never raises (a hook that fails hides the failure it reports). Where the
    server has the alert automation (`arflow setup-alerts`), it alerts and the hook does not, so one
    failure is one alert."""
    try:
        text = failure_text(flow.name, flow_run.name, (flow_run.parameters or {}).get("as_of", "today"),
                            state.name, state.message or "")
        log.error(text)
        if _automation_alerts():
            return
        deliver_alert(text)
    except Exception as exc:  # noqa: BLE001
        log.error("arflow: the failure alert could not be sent (%s)", exc.__class__.__name__)


def _automation_alerts() -> bool:
    from arflow.alerts import automation_in_effect

    try:
        return automation_in_effect()
    except Exception:  # noqa: BLE001 - the server cannot say: alert from here (two alerts beat none)
        return False


def deliver_alert(text: str) -> str:
    """Send an alert by the first channel configured; returns which one took it. The text is
    redacted (arflow.safety) whoever wrote it."""
    from arflow.safety import redact

    text = redact(text)
    from arflow.blocks import slack_webhook_url, smtp_config
    from connectors.messaging import SlackWebhook, SmtpMailer, compose

    url = slack_webhook_url()
    if url:
        SlackWebhook(url).send(text)
        return "slack"
    smtp = smtp_config()
    if smtp is not None:
        from arflow.config import Settings
        from arflow.policy import load_policy

        to = load_policy(Settings.from_env().policy_path).delivery.finance_team
        msg = compose(sender=smtp.mail_from, to=[to], cc=[], subject=text[:150], body=text,
                      key=f"alert:{abs(hash(text))}")
        with SmtpMailer(smtp) as mailer:
            mailer.send(msg)
        return "email"
    return "log"
