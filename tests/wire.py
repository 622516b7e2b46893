"""What the local servers of tests/fake_*.py share: an HTTP (or, given a certificate, HTTPS)
server on 127.0.0.1 whose handler reads the request and asks `answer(method, path, query, body,
headers)` for (status, body, headers); a body that is not text is sent as JSON."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WireServer:
    content_type = "application/json"

    def __init__(self, tls: tuple | None = None):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                with fake.lock:
                    fake.requests.append({"method": method, "path": url.path, "query": query, "body": body,
                                          "headers": dict(self.headers)})
                    status, out, headers = fake.answer(method, url.path, query, body, self.headers)
                raw = out if isinstance(out, (bytes, str)) else fake.dumps(out)
                raw = raw.encode() if isinstance(raw, str) else raw
                headers = dict(headers or {})
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", fake.content_type))
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def dumps(self, obj) -> str:
        return json.dumps(obj)

    def answer(self, method: str, path: str, query: dict, body: str, headers) -> tuple[int, object, dict]:
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
