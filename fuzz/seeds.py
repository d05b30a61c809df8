#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/ (run from anywhere; it is idempotent).

Each file is one input in its target's byte format (see crates/herald-fuzz/src/*.rs):
knobs first, then NUL-separated parts. Kept as a script so the seeds stay readable.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    path = os.path.join(HERE, "corpus", target)
    os.makedirs(path, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def parts(*items):
    return b"\0".join(i.encode() if isinstance(i, str) else i for i in items)


# --- config: herald.toml files -----------------------------------------------------
README = os.path.join(HERE, "..", "README.md")
with open(README, encoding="utf-8") as f:
    readme = f.read()
blocks = readme.split("```toml\n")[1:]
tomls = [b.split("```", 1)[0] for b in blocks]
write("config", "empty.toml", "")
for i, text in enumerate(tomls[:3]):
    write("config", f"readme-{i}.toml", text)
write("config", "syntax-error.toml", '[server]\nlisten = "127.0.0.1:8080\n[destinations.x]\nkind = webhook\n')
write("config", "problems.toml", """[server]
listen = "localhost"
shutdown_grace = "10 parsecs"

[destinations.hook]
kind = "webhok"
url = "ftp://example.com"
max_atempts = 3

[groups]
all = ["hook", "nowhere"]
""")

# --- render: [kind][thread][severity][repeat] title, body, fields, links, tags, original ---
KINDS = ["webhook", "slack", "slack-webhook", "teams-workflow", "teams-graph", "jira",
         "pagerduty", "opsgenie", "discord", "mattermost", "mattermost-webhook", "email",
         "matrix"]
BODY = """## Impact
Checkout returns **502** for _all_ EU users since 12:02 UTC.

- error rate: `38%`
- [dashboard](https://grafana.example.com/d/checkout) and <b>raw html</b>
  1. nested item with ~~strike~~
> quoted customer report
> > nested quote

```sql
SELECT * FROM orders WHERE state = 'stuck' & id < 10;
```

| region | status |
|---|---|
| eu-west | down |

---
Footnote[^1] and a ![graph](https://img.example.com/g.png "title").
"""
FIELDS = "service=checkout\nregion=eu-west-1\nrunbook=https://runbooks.example.com/checkout"
LINKS = "Dashboard|https://grafana.example.com/d/checkout\nIncident|https://status.example.com/i/42"
TAGS = "p1\nteam payments\ncheckout"
for i, kind in enumerate(KINDS):
    thread = 0 if i % 3 == 0 else i
    write("render", f"{i:02d}-{kind}", bytes([i, thread, i % 5, 0]) + parts(
        "P1: checkout is down", BODY, FIELDS, LINKS, TAGS, "P1: checkout is down (original)"))
    # The same with the body and field values repeated 64 times: near the size limits.
    write("render", f"{i:02d}-{kind}-large", bytes([i, 0, 3, 6]) + parts(
        "Disk full on db-1 " * 20, BODY, FIELDS, LINKS, TAGS))

# Jira with 30 fields of 1,280 characters: over Jira's limit without the body.
write("render", "05-jira-wide-fields", bytes([5, 1, 0, 127]) + parts(
    "alert", "body", "\n".join(f"k{i}=0123456789" for i in range(30)), "", "", "orig"))

# Teams and Matrix with 40 fields of 1,280 characters and no body.
for kind in (3, 4, 12):
    write("render", f"{kind:02d}-{KINDS[kind]}-wide-fields", bytes([kind, 0, 3, 127]) + parts(
        "alert", "", "\n".join(f"k{i}=0123456789" for i in range(40)), LINKS, "", ""))

# --- markdown: [converter][knob] text ---------------------------------------------------
CONVERTERS = ["slack", "teams-workflow", "teams-graph", "email", "jira", "cut", "excerpt"]
for i, converter in enumerate(CONVERTERS):
    write("markdown", f"{i}-{converter}", bytes([i, 40]) + BODY.encode())
write("markdown", "0-slack-links", bytes([0, 0]) +
      b"[runbook](https://example.com/a|b>c) <https://auto.example.com> *a* __b__ `c`")
write("markdown", "4-jira-nesting", bytes([4, 0]) +
      b"- # heading in a list\n  > quote in a list\n    ```\n    code\n    ```\n- `code` **bold** [link](https://x.example)")
write("markdown", "6-excerpt-utf8", bytes([6, 3]) + "héllo\x00\x1b[31m wörld\t\n…".encode())

# --- classify: [kind][status u16][knob] headers, body ---------------------------------
CLASSIFY = ["http", "slack", "slack-webhook", "discord", "matrix", "mattermost",
            "mattermost-webhook", "jira", "opsgenie", "pagerduty", "teams-workflow",
            "teams-graph", "teams-graph-token", "email"]


def answer(name, kind, status, headers, body, knob=0):
    data = bytes([CLASSIFY.index(kind)]) + struct.pack(">H", status) + bytes([knob])
    write("classify", name, data + parts("\n".join(headers), body))


answer("http-503-retry-after", "http", 503, ["Retry-After: 120"], "<html>Service Unavailable</html>")
answer("http-301", "http", 301, ["Location: https://elsewhere.example.com/x"], "")
answer("slack-channel-gone", "slack", 200, [], '{"ok":false,"error":"channel_not_found"}')
answer("slack-ratelimited", "slack", 429, ["Retry-After: 30"], '{"ok":false,"error":"ratelimited"}')
answer("slack-ok", "slack", 200, [], '{"ok":true,"channel":"C1","ts":"1795950123.000100"}')
answer("slack-webhook-no-service", "slack-webhook", 404, [], "no_service")
answer("discord-429", "discord", 429, ["X-RateLimit-Scope: user", "X-RateLimit-Reset-After: 1.5"],
       '{"message":"You are being rate limited.","retry_after":1.5,"global":false}')
answer("discord-unknown-webhook", "discord", 404, [], '{"message":"Unknown Webhook","code":10015}')
answer("discord-ok", "discord", 200, [], '{"id":"1234567890123456789","content":"x"}')
answer("matrix-limit", "matrix", 429, [],
       '{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":2000}')
answer("matrix-forbidden", "matrix", 403, [], '{"errcode":"M_FORBIDDEN","error":"not in room"}')
answer("mattermost-created", "mattermost", 201, [], '{"id":"4xp9fdt77pncbef59f4k1qe83o"}')
answer("mattermost-pending", "mattermost", 500, [],
       '{"id":"api.post.deduplicate_create_post.pending","message":"in progress"}')
answer("mattermost-webhook-invalid", "mattermost-webhook", 400, [],
       '{"id":"web.incoming_webhook.invalid.app_error","message":"Invalid webhook.","status_code":400}')
answer("jira-invalid", "jira", 400, [],
       '{"errorMessages":["bad"],"errors":{"summary":"You must specify a summary of the issue."}}')
answer("jira-429", "jira", 429, ["Retry-After: 5", "RateLimit-Reason: jira-burst-based",
                                 "X-RateLimit-Limit: 100"], "")
answer("opsgenie-422", "opsgenie", 422, [],
       '{"message":"Request body is not processable.","errors":{"message":"Message can not be empty."},"took":0.001}')
answer("opsgenie-429", "opsgenie", 429, ["X-RateLimit-State: THROTTLED",
                                         "X-RateLimit-Period-In-Sec: 60"], "")
answer("pagerduty-invalid", "pagerduty", 400, [],
       '{"status":"invalid event","message":"Event object is invalid","errors":["Length of \'routing_key\' is incorrect (should be 32 characters)"]}')
answer("pagerduty-accepted", "pagerduty", 202, [],
       '{"status":"success","message":"Event processed","dedup_key":"herald-b_1"}')
answer("teams-workflow-schema", "teams-workflow", 400, [],
       '{"error":{"code":"TriggerInputSchemaMismatch","message":"The input body does not match the schema."}}')
answer("teams-workflow-queued", "teams-workflow", 202, [], "")
answer("teams-graph-created", "teams-graph", 201, [], '{"id":"1616990032035","etag":"1"}')
answer("teams-graph-forbidden", "teams-graph", 403, [],
       '{"error":{"code":"Forbidden","message":"Missing role permissions."}}')
answer("teams-graph-token-grant", "teams-graph-token", 400, [],
       '{"error":"invalid_grant","error_description":"AADSTS70000: The provided grant has expired.\\r\\nTrace ID: 1"}')
answer("email-550", "email", 550, [], "5.1.1 <oncall@example.com>: Recipient address rejected", 4)
answer("email-451", "email", 451, [], "4.3.0 Try again later", 7)

# --- retry_after: [mode][now u32] value, or mode 1: [now u32][date u64] -----------------
for i, value in enumerate(["120", "0", "-5", "1.5", " 30 ", "Wed, 21 Oct 2015 07:28:00 GMT",
                           "Sun, 06 Nov 2094 08:49:37 GMT", "99999999999999999999999", "1e3", ""]):
    write("retry_after", f"value-{i}", bytes([0]) + struct.pack(">I", 60) + value.encode())
write("retry_after", "date-future", bytes([1]) + struct.pack(">I", 0) + struct.pack(">Q", 1_795_953_900))
write("retry_after", "date-past", bytes([1]) + struct.pack(">I", 0) + struct.pack(">Q", 1_000_000_000))

# --- api: [mode] (header NUL) body ------------------------------------------------------
SUBMIT = ('{"destinations":["oncall","ops-webhook"],"message":{"title":"P1: checkout is down",'
          '"body":"**502** for EU users","severity":"critical","fields":{"region":"eu-west-1"},'
          '"links":[{"title":"Dashboard","url":"https://grafana.example.com/d/1"}],"tags":["p1"]},'
          '"idempotency_key":"incident-42","expires_in":"2h"}')
write("api", "submit", bytes([0]) + SUBMIT.encode())
write("api", "submit-header-key", bytes([2]) + b"incident-42\0" + SUBMIT.encode())
write("api", "submit-minimal", bytes([0]) + b'{"destinations":["slack"],"message":{"title":"hi"}}')
write("api", "submit-invalid", bytes([0]) +
      b'{"destinations":["stale","nowhere"],"message":{"title":" ","links":[{"title":"x","url":"ftp://x"}]},"expires_in":"0s"}')
write("api", "submit-unknown-field", bytes([0]) + b'{"destinations":["slack"],"message":{"title":"hi","colour":"red"}}')
write("api", "submit-not-json", bytes([0]) + b'{"destinations":["slack"],')
write("api", "update", bytes([1]) + b'{"message":{"title":"Resolved","severity":"resolved"},"idempotency_key":"u1"}')
write("api", "update-header-mismatch", bytes([3]) + b"other\0" + b'{"message":{"title":"x"},"idempotency_key":"u1"}')
