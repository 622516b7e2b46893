"""Claude, through the anthropic SDK: one forced tool call per request, the fixed part of the prompt
marked for prompt caching, and every call's tokens and cost kept for the ledger.

Where the model cannot be used (no ANTHROPIC_API_KEY, ``llm.enabled: false``) ``open_llm`` returns
None and callers keep the rules and templates. Where a call fails after the SDK's own retries
(429, 529 overloaded, 5xx, timeouts), ``ask`` raises :class:`LlmUnavailable` naming the job and the
cause, never the key; callers fall back to the rules for that batch and count it.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

from arflow.policy import Llm, Policy


class LlmUnavailable(RuntimeError):
    """The model could not be reached or kept failing; the message names the job and the cause."""


@dataclass
class Claude:
    settings: Llm
    client: Any                                   # anthropic.Anthropic
    run_id: str | None = None
    as_of: dt.date | None = None
    calls: list[dict] = field(default_factory=list)  # rows for the ledger's llm_calls

    @classmethod
    def connect(cls, settings: Llm, *, api_key: str, base_url: str | None = None, **kw) -> "Claude":
        import anthropic

        client = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=settings.timeout_seconds,
                                     max_retries=settings.max_retries)
        return cls(settings=settings, client=client, **kw)

    def model_for(self, job: str) -> str:
        return self.settings.models[job]

    def cost_micro_usd(self, model: str, usage: dict) -> int:
        price = self.settings.prices[model]
        total = (Decimal(usage["input_tokens"]) * price.input + Decimal(usage["output_tokens"]) * price.output
                 + Decimal(usage["cache_read_tokens"]) * price.cache_read
                 + Decimal(usage["cache_write_tokens"]) * price.cache_write)
        return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def ask(self, job: str, prompt_version: str, system: str, user: str, tool: dict, *, items: int,
            validate: Callable[[dict], Any], max_tokens: int = 4096) -> Any:
        """One request that must answer through `tool`. Returns ``validate(tool input)``, or None when
        the model refused, answered without the tool, or gave an answer `validate` rejects
        (ValueError): the caller falls back and counts it. Raises LlmUnavailable when the API fails."""
        import anthropic

        model = self.model_for(job)
        row = {"run_id": self.run_id, "as_of": self.as_of, "job": job, "model": model,
               "prompt_version": prompt_version, "items": items, "input_tokens": 0, "output_tokens": 0,
               "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_micro_usd": 0}
        try:
            msg = self.client.messages.create(
                model=model, max_tokens=max_tokens,
                system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                tools=[tool], tool_choice={"type": "tool", "name": tool["name"]},
                messages=[{"role": "user", "content": user}])
        except anthropic.APIStatusError as exc:
            self.calls.append({**row, "outcome": "unavailable"})
            raise LlmUnavailable(f"Claude ({job}, {model}): HTTP {exc.status_code} {_error_type(exc)}") from None
        except anthropic.APIError as exc:  # timeouts, connection errors, unreadable responses
            self.calls.append({**row, "outcome": "unavailable"})
            raise LlmUnavailable(f"Claude ({job}, {model}): {exc.__class__.__name__}") from None
        u = msg.usage
        usage = {"input_tokens": u.input_tokens or 0, "output_tokens": u.output_tokens or 0,
                 "cache_read_tokens": getattr(u, "cache_read_input_tokens", None) or 0,
                 "cache_write_tokens": getattr(u, "cache_creation_input_tokens", None) or 0}
        row.update(usage, cost_micro_usd=self.cost_micro_usd(model, usage))
        if msg.stop_reason == "refusal":
            self.calls.append({**row, "outcome": "refused"})
            return None
        blocks = [b for b in msg.content if getattr(b, "type", None) == "tool_use" and b.name == tool["name"]]
        if not blocks:
            self.calls.append({**row, "outcome": "invalid"})
            return None
        try:
            result = validate(blocks[0].input)
        except (ValueError, TypeError, KeyError):
            self.calls.append({**row, "outcome": "invalid"})
            return None
        self.calls.append({**row, "outcome": "ok"})
        return result

    def totals(self, since: int = 0) -> dict:
        rows = self.calls[since:]
        return llm_totals(rows)


def llm_totals(rows: list[dict]) -> dict:
    """What `arflow run --json` reports: calls, tokens and cost (USD, from integer micro-dollars)."""
    micro = sum(r["cost_micro_usd"] for r in rows)
    return {"llm_calls": len(rows), "input_tokens": sum(r["input_tokens"] for r in rows),
            "output_tokens": sum(r["output_tokens"] for r in rows),
            "cache_read_tokens": sum(r["cache_read_tokens"] for r in rows),
            "cache_write_tokens": sum(r["cache_write_tokens"] for r in rows),
            "cost_usd": float(Decimal(micro) / Decimal(1_000_000))}


def _error_type(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error") if isinstance(body.get("error"), dict) else body
        return str(err.get("type", ""))
    return ""


def open_llm(policy: Policy, *, run_id: str | None = None, as_of: dt.date | None = None) -> Claude | None:
    """Claude where ANTHROPIC_API_KEY is set and the policy turns the model on; else None (rules and
    templates). ANTHROPIC_BASE_URL points the SDK elsewhere (a proxy, or the tests' local server)."""
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not key or not policy.llm.enabled:
        return None
    return Claude.connect(policy.llm, api_key=key, base_url=os.environ.get("ANTHROPIC_BASE_URL") or None,
                          run_id=run_id, as_of=as_of)
