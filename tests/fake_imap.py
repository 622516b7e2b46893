"""A small IMAP4rev1 server on 127.0.0.1 for the tests: enough of the protocol for Python's imaplib
(CAPABILITY, LOGIN, SELECT/EXAMINE, SEARCH, FETCH RFC822, STORE, LOGOUT), serving the messages of
an mbox file. Messages fetched through SELECT (not EXAMINE) become \\Seen."""

from __future__ import annotations

import mailbox
import re
import socketserver
import threading


class FakeImap:
    def __init__(self, mbox_path, user: str = "ar@yourco.example", password: str = "secret"):
        self.messages = [m.as_bytes() for m in mailbox.mbox(str(mbox_path), create=False)]
        self.seen: set[int] = set()
        self.user, self.password = user, password
        self.commands: list[str] = []
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def send(self, text: str | bytes) -> None:
                self.wfile.write(text if isinstance(text, bytes) else text.encode())

            def handle(self):
                self.send("* OK [CAPABILITY IMAP4rev1] fake ready\r\n")
                readonly = True
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    tag, _, rest = line.decode().strip().partition(" ")
                    cmd, _, args = rest.partition(" ")
                    cmd = cmd.upper()
                    fake.commands.append(cmd)
                    if cmd == "CAPABILITY":
                        self.send(f"* CAPABILITY IMAP4rev1\r\n{tag} OK CAPABILITY completed\r\n")
                    elif cmd == "LOGIN":
                        user, password = [a.strip('"') for a in args.split(" ", 1)]
                        ok = (user, password) == (fake.user, fake.password)
                        self.send(f"{tag} OK LOGIN completed\r\n" if ok else
                                  f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
                    elif cmd in ("SELECT", "EXAMINE"):
                        if args.strip('"').upper() != "INBOX":
                            self.send(f"{tag} NO [NONEXISTENT] no such mailbox\r\n")
                            continue
                        readonly = cmd == "EXAMINE"
                        self.send(f"* {len(fake.messages)} EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen)\r\n"
                                  f"{tag} OK [{'READ-ONLY' if readonly else 'READ-WRITE'}] {cmd} completed\r\n")
                    elif cmd == "SEARCH":
                        nums = [str(i + 1) for i in range(len(fake.messages))
                                if "UNSEEN" not in args.upper() or i + 1 not in fake.seen]
                        self.send(f"* SEARCH {' '.join(nums)}\r\n{tag} OK SEARCH completed\r\n")
                    elif cmd == "FETCH":
                        num = int(re.match(r"(\d+)", args).group(1))
                        raw = fake.messages[num - 1]
                        self.send(f"* {num} FETCH (RFC822 {{{len(raw)}}}\r\n".encode() + raw + b")\r\n")
                        if not readonly:
                            fake.seen.add(num)
                        self.send(f"{tag} OK FETCH completed\r\n")
                    elif cmd == "LOGOUT":
                        self.send(f"* BYE logging out\r\n{tag} OK LOGOUT completed\r\n")
                        return
                    else:
                        self.send(f"{tag} BAD unknown command\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self) -> "FakeImap":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
