"""A real SMTP server for herald's e-mail tests: aiosmtpd on 127.0.0.1, recording every
message it receives and replying as the test asks.

Usage: python3 smtp_server.py PLAN_JSON RECORD_PATH
Prints "READY <port>" once it accepts connections; stops when stdin closes.

The plan (all keys optional; every list is a queue consumed one reply per command,
then the normal answer):
  "mail": ["552 5.3.4 Message too big"]             replies to MAIL FROM
  "rcpt": {"b@x.test": ["451 4.3.0 Try later"]}     replies to RCPT TO, per address
  "rcpt_always": {"b@x.test": "550 5.1.1 No such user"}
  "data": ["451 4.3.0 Try again later"]             replies after the final "."
  "drop_after_data": 1                              close without a reply after "."
  "login": ["herald", "pw"]                         offer AUTH (in clear: loopback only)
Each line of RECORD_PATH is one JSON object: "event" ("accepted", "rejected", "dropped"),
"reply", "mail_from", "rcpt_tos", "headers" ([name, value] pairs) and "parts" (each
leaf part's "type" and decoded "content").
"""

import email
import email.policy
import json
import socket
import sys

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult
except ImportError as error:
    print(f"{error}: run `pip install aiosmtpd`", file=sys.stderr)
    sys.exit(3)


class Handler:
    def __init__(self, plan, record_path):
        self.plan = plan
        self.record_path = record_path

    def take(self, queue):
        return queue.pop(0) if queue else None

    def record(self, event, reply, envelope):
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = [
            {"type": part.get_content_type(), "content": part.get_content()}
            for part in parsed.walk()
            if not part.is_multipart()
        ]
        entry = {
            "event": event,
            "reply": reply,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "headers": [[name, str(value)] for name, value in parsed.items()],
            "parts": parts,
        }
        with open(self.record_path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.take(self.plan.get("mail"))
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        always = self.plan.get("rcpt_always", {}).get(address)
        if always:
            return always
        reply = self.take(self.plan.get("rcpt", {}).get(address))
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.plan.get("drop_after_data", 0) > 0:
            self.plan["drop_after_data"] -= 1
            self.record("dropped", None, envelope)
            server.transport.abort()
            return "250 OK (never sent: the connection is gone)"
        reply = self.take(self.plan.get("data"))
        if reply:
            self.record("rejected", reply, envelope)
            return reply
        reply = "250 2.0.0 Ok: queued as HERALDTEST"
        self.record("accepted", reply, envelope)
        return reply


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    plan = json.loads(sys.argv[1])
    record_path = sys.argv[2]
    open(record_path, "w", encoding="utf-8").close()
    port = free_port()
    options = {}
    if "login" in plan:
        user, password = plan["login"]

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == user.encode() and auth_data.password == password.encode()
            return AuthResult(success=ok, handled=False)

        options = {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}
    controller = Controller(
        Handler(plan, record_path), hostname="127.0.0.1", port=port, **options
    )
    controller.start()
    print(f"READY {port}", flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
