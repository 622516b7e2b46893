"""A local stand-in for the Anthropic Messages API, spoken at the wire: the real SDK is pointed at it
with ``base_url``. It answers ``POST /v1/messages`` with the API's JSON, counts tokens (about four
characters a token), and models prompt caching: a ``cache_control`` prefix at least as long as
the model's minimum is written on first sight and read afterwards.

What it answers:
- first, anything queued with :meth:`FakeAnthropic.queue` (a response body, an HTTP error such as
  529 overloaded, or a delay that outlasts the client's timeout), in order;
- then, for a forced tool call, the tool input a responder for that tool returns (see RESPONDERS).

Run-time code, shipped in the wheel: the simulator's model stand-in (`arflow simulate --model fake`:
the model's cost per invoice per day in a simulated policy), also used by benchmarks/llm_cost.py and
the tests. It reads no file: the tests' recorded responses (refusals, 529s, malformed tool calls)
stay in tests/fixtures/anthropic/ and are queued by the tests (tests/anthropic_recorded.py).
Nothing here reaches the internet.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

MIN_CACHE_TOKENS = {"claude-haiku-4-5": 4096, "claude-sonnet-4-5": 1024, "claude-opus-4-5": 4096}


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


# ---- default answers per tool: plausible, deterministic ---------------------------------------
def answer_scores(request: dict, user: str) -> dict:
    items = json.loads(user[user.index("["):])
    scores = []
    for f in items:
        tone, esc = f["rules_tone"], f["rules_escalation"]
        # A long relationship with no late history (the rules' first_time_late also wants ten on-time
        # payments on record, which a customer new to the ledger's history does not have yet).
        long_and_good = ((f.get("tenure_months") or 0) >= 36 and not f.get("chronic_late")
                         and (f.get("avg_days_late") or 0) == 0)
        if long_and_good and tone != "friendly":
            tone = "friendly"
            if esc == "none":
                esc = "owner"
        risk = f["rules_risk_score"] + (10 if (f.get("p_late") or 0) > 0.6 else 0) - (5 if long_and_good else 0)
        scores.append({"invoice_id": f["invoice_id"], "risk_score": max(0, min(100, risk)), "tone": tone,
                       "escalation": esc,
                       "escalation_reason": "" if esc == "none" else "long relationship, first late payment"
                       if long_and_good else f"rules: {esc}",
                       "rationale": f"{f['lane']} lane, {f['paid_count']} paid before, avg {f['avg_days_late']} days late"})
    return {"scores": scores}


def answer_draft(request: dict, user: str) -> dict:
    doc = json.loads(user[user.index("{"):])
    body = doc["approved_body"]
    name = doc.get("ap_contact") or doc.get("contact_name")
    if name and doc.get("tenure_months", 0) >= 24:  # after the greeting (the first name, or the whole name)
        greeting = next((g for g in (f"Hi {name.split()[0]},", f"Hi {name},") if body.startswith(g)), None)
        if greeting:
            body = body.replace(greeting, f"{greeting}\n\nThank you for {doc['tenure_months'] // 12} years of working "
                                "together.", 1)
    return {"subject": doc["approved_subject"], "body": body}


_DATE = re.compile(r"\b(20\d\d-\d\d-\d\d)\b")


def answer_triage(request: dict, user: str) -> dict:
    doc = json.loads(user[user.index("["):])
    out = []
    for r in doc:
        text = (r["subject"] + " " + r["body"]).lower()
        date = _DATE.search(text)
        entry = {"reply_id": r["reply_id"], "category": "question", "date": None, "amount": None,
                 "new_contact_email": None, "new_contact_name": None, "summary": r["subject"][:80],
                 "instructions_found": "ignore" in text and "instruction" in text}
        if "out of office" in text or "out of the office" in text or "on leave" in text:
            entry.update(category="out_of_office", date=date.group(1) if date else None)
        elif "remittance" in text or "we paid" in text or "payment was sent" in text:
            entry["category"] = "paid"
        elif "will pay" in text or "we'll pay" in text:
            entry.update(category="promise_to_pay", date=date.group(1) if date else None)
        elif "dispute" in text or "incorrect" in text or "wrong amount" in text:
            m = re.search(r"(\d[\d,]*\.\d\d)", text)
            entry.update(category="dispute", amount=m.group(1).replace(",", "") if m else None)
        elif "no longer" in text or "contact instead" in text:
            m = re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", r["body"])
            entry.update(category="wrong_contact", new_contact_email=m.group(0) if m else None)
        elif "lawyer" in text or "attorney" in text:
            entry["category"] = "legal_threat"
        elif "refund" in text:
            entry["category"] = "refund_request"
        elif "unacceptable" in text or "furious" in text:
            entry["category"] = "complaint"
        out.append(entry)
    return {"replies": out}


RESPONDERS: dict[str, Callable[[dict, str], dict]] = {
    "record_scores": answer_scores, "write_draft": answer_draft, "classify_replies": answer_triage}


class FakeAnthropic:
    def __init__(self, responders: dict | None = None):
        self.responders = {**RESPONDERS, **(responders or {})}
        self.requests: list[dict] = []
        self.script: list[tuple] = []
        self.cached_prefixes: set[str] = set()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeAnthropic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def queue(self, kind: str, value=None, status: int = 200) -> None:
        """kind: 'body' (a response body, e.g. a recorded refusal), 'error' (status and the error's
        body), 'sleep' (seconds before answering normally)."""
        self.script.append((kind, value, status))

    # ---- the API ---------------------------------------------------------------------------
    def respond(self, req: dict) -> tuple[int, dict, float]:
        with self.lock:
            self.requests.append(req)
            step = self.script.pop(0) if self.script else None
        delay = 0.0
        if step is not None:
            kind, value, status = step
            if kind == "error":
                return status, value, 0.0
            if kind == "body":
                return 200, value, 0.0
            if kind == "sleep":
                delay = float(value)
        system = req.get("system") or []
        prefix = json.dumps(req.get("tools", [])) + "".join(b["text"] for b in system if isinstance(b, dict))
        user = "".join(m["content"] if isinstance(m["content"], str) else
                       "".join(b.get("text", "") for b in m["content"]) for m in req["messages"])
        usage = {"input_tokens": tokens(user), "output_tokens": 0, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0}
        cacheable = any(isinstance(b, dict) and b.get("cache_control") for b in system)
        ptoks = tokens(prefix)
        if cacheable and ptoks >= MIN_CACHE_TOKENS.get(req["model"], 1024):
            with self.lock:
                seen = prefix in self.cached_prefixes
                self.cached_prefixes.add(prefix)
            usage["cache_read_input_tokens" if seen else "cache_creation_input_tokens"] = ptoks
        else:
            usage["input_tokens"] += ptoks
        choice = req.get("tool_choice") or {}
        name = choice.get("name")
        answer = self.responders[name](req, user)
        usage["output_tokens"] = tokens(json.dumps(answer))
        body = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": req["model"],
                "content": [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name,
                             "input": answer}],
                "stop_reason": "tool_use", "stop_sequence": None, "usage": usage}
        return 200, body, delay

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                req = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/messages":
                    status, body, delay = 404, {"type": "error", "error": {"type": "not_found_error",
                                                                           "message": self.path}}, 0.0
                elif not (self.headers.get("x-api-key") or self.headers.get("authorization", "").startswith("Bearer ")):
                    status, body, delay = 401, {"type": "error", "error": {"type": "authentication_error",
                                                                           "message": "invalid x-api-key"}}, 0.0
                else:
                    try:
                        status, body, delay = fake.respond(req)
                    except Exception as exc:  # a responder that cannot read the request: the API's 500
                        status, body, delay = 500, {"type": "error", "error": {"type": "api_error",
                                                                               "message": repr(exc)}}, 0.0
                if delay:
                    time.sleep(delay)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("request-id", f"req_{uuid.uuid4().hex[:20]}")
                    if status in (429, 529):
                        self.send_header("retry-after", "0")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        return Handler
