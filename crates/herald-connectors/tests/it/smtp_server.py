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
  "login": ["herald", "pw"]                         offer AUTH (in clear unless "tls")
  "tls": "starttls" | "implicit"                    offer STARTTLS, or TLS from the first
                                                    byte, with a certificate for 127.0.0.1
                                                    and localhost from a throwaway CA
  "ca_path": "/tmp/x/ca.pem"                        where the CA's certificate is written
  "require_starttls": true                          refuse other commands before STARTTLS
  "stall": "ehlo"                                   never answer the first such command:
                                                    ehlo, starttls, auth, mail, rcpt, data
                                                    (before 354) or end_of_data (after ".")
Each line of RECORD_PATH is one JSON object: "event" ("accepted", "rejected", "dropped",
"stalled"), "reply", "mail_from", "rcpt_tos", "tls" (the TLS version, or null in clear
text), "login" (the user that logged in, or null), "headers" ([name, value] pairs) and
"parts" (each leaf part's "type" and decoded "content").

The certificates are made with the `cryptography` package (PyPI), which aiosmtpd does not
pull in; the Rust side installs it when missing.
"""

import asyncio
import datetime
import email
import email.policy
import ipaddress
import json
import os
import socket
import ssl
import sys
import tempfile

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult
except ImportError as error:
    print(f"{error}: run `pip install aiosmtpd`", file=sys.stderr)
    sys.exit(3)

# Long enough that only the client's own timeout ends the wait.
STALL_SECONDS = 3600


class Handler:
    def __init__(self, plan, record_path):
        self.plan = plan
        self.record_path = record_path

    def take(self, queue):
        return queue.pop(0) if queue else None

    def record(self, event, reply, envelope, server):
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = [
            {"type": part.get_content_type(), "content": part.get_content()}
            for part in parsed.walk()
            if not part.is_multipart()
        ]
        tls = server.transport.get_extra_info("ssl_object") if server.transport else None
        login = getattr(server.session.auth_data, "login", None)
        entry = {
            "event": event,
            "reply": reply,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "tls": tls.version() if tls else None,
            "login": login.decode() if login else None,
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
            self.record("dropped", None, envelope, server)
            server.transport.abort()
            return "250 OK (never sent: the connection is gone)"
        if self.plan.get("stall") == "end_of_data":
            del self.plan["stall"]
            self.record("stalled", None, envelope, server)
            await asyncio.sleep(STALL_SECONDS)
        reply = self.take(self.plan.get("data"))
        if reply:
            self.record("rejected", reply, envelope, server)
            return reply
        reply = "250 2.0.0 Ok: queued as HERALDTEST"
        self.record("accepted", reply, envelope, server)
        return reply


class StallingSMTP(SMTP):
    """aiosmtpd's server that leaves the first `stall` command unanswered."""

    def __init__(self, handler, stall, **kwargs):
        super().__init__(handler, **kwargs)
        verb = {"ehlo": "EHLO", "starttls": "STARTTLS", "auth": "AUTH", "mail": "MAIL",
                "rcpt": "RCPT", "data": "DATA"}.get(stall)
        if verb is None:
            return
        answer = self._smtp_methods[verb]
        stalls = [verb]

        async def stalled(arg):
            if stalls:
                stalls.pop()
                await asyncio.sleep(STALL_SECONDS)
            return await answer(arg)

        self._smtp_methods[verb] = stalled


class PlannedController(Controller):
    """A controller whose servers stall where the plan says."""

    def __init__(self, handler, stall, **kwargs):
        self.stall = stall
        super().__init__(handler, **kwargs)

    def factory(self):
        return StallingSMTP(self.handler, self.stall, **self.SMTP_kwargs)


def certificates(directory, ca_path):
    """A throwaway CA (its certificate written to `ca_path`) and a server certificate
    for 127.0.0.1 and localhost it signed; returns the server's (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def builder(subject, key, issuer):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"herald test CA {os.getpid()}")
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, encipher_only=False, decipher_only=False)
    ca = (
        builder(ca_name, ca_key, ca_name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     **usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = (
        builder(name("127.0.0.1"), key, ca_name)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                     crl_sign=False, **usage), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    with open(ca_path, "wb") as out:
        out.write(ca.public_bytes(pem))
    cert_path = os.path.join(directory, "server.pem")
    key_path = os.path.join(directory, "server.key")
    with open(cert_path, "wb") as out:
        out.write(server.public_bytes(pem))
    with open(key_path, "wb") as out:
        out.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return cert_path, key_path


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
    tls = plan.get("tls")
    if "login" in plan:
        user, password = plan["login"]

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == user.encode() and auth_data.password == password.encode()
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        # Over TLS, aiosmtpd offers AUTH only once the connection is encrypted.
        options = {"authenticator": authenticator, "auth_require_tls": bool(tls),
                   "auth_required": True}
    with tempfile.TemporaryDirectory() as directory:
        if tls:
            cert, key = certificates(directory, plan["ca_path"])
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            if tls == "implicit":
                options["ssl_context"] = context
            else:
                options["tls_context"] = context
                options["require_starttls"] = bool(plan.get("require_starttls"))
        controller = PlannedController(
            Handler(plan, record_path), plan.get("stall"), hostname="127.0.0.1", port=port,
            **options
        )
        controller.start()
        print(f"READY {port}", flush=True)
        sys.stdin.read()
        controller.stop()


if __name__ == "__main__":
    main()
