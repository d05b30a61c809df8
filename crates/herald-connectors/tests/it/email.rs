//! The e-mail connector against a real SMTP server: `aiosmtpd` (PyPI), started per test
//! on 127.0.0.1 by `smtp_server.py`, recording every message and replying as each test's
//! plan says (451, 550, 552, a reply lost after the final dot, a command never
//! answered), in clear text, with STARTTLS or with implicit TLS under a certificate from
//! a CA made for the test. A missing `python3` fails the test; a missing `aiosmtpd` or
//! `cryptography` (which makes the certificates) is installed with pip, as `.ci/run`
//! does for aiosmtpd.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use herald_connectors::email::{Email, EmailConfig, Tls, TlsCa, message_id};
use herald_connectors::outbound::Outbound;
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Link, Message, Outcome, Severity, Timestamp};
use serde_json::{Value, json};

const A: &str = "oncall@x.test";
const B: &str = "cto@x.test";

/// Installs `aiosmtpd` and `cryptography` once per run if they are missing.
fn ensure_python_packages() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for package in ["aiosmtpd", "cryptography"] {
            let present = Command::new("python3")
                .args(["-c", &format!("import {package}")])
                .status()
                .unwrap_or_else(|e| panic!("cannot run python3 ({e}): install Python 3"))
                .success();
            if !present {
                let status = Command::new("python3")
                    .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                    .arg(package)
                    .status()
                    .unwrap();
                assert!(status.success(), "pip install {package} failed");
            }
        }
    });
}

/// One running aiosmtpd, the file it records into and, with TLS, its CA's certificate;
/// stopped on drop.
struct SmtpServer {
    child: Child,
    port: u16,
    record: PathBuf,
    ca: PathBuf,
}

impl SmtpServer {
    fn start(mut plan: Value) -> SmtpServer {
        ensure_python_packages();
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("herald-smtp-{}-{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed));
        let record = std::env::temp_dir().join(format!("{name}.jsonl"));
        let ca = std::env::temp_dir().join(format!("{name}-ca.pem"));
        plan["ca_path"] = json!(ca);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/smtp_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(plan.to_string())
            .arg(&record)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("READY ").and_then(|p| p.parse().ok());
        let port = port.unwrap_or_else(|| panic!("the SMTP server did not start: {line:?}"));
        SmtpServer { child, port, record, ca }
    }

    /// The CA that signed this server's certificate, as `tls_ca = "file:…"` reads it.
    fn tls_ca(&self) -> TlsCa {
        let pem = std::fs::read_to_string(&self.ca).unwrap();
        TlsCa::new(format!("the contents of `{}`", self.ca.display()), &pem).unwrap()
    }

    /// Settings for this server with `tls`, trusting its CA, mailing [`A`].
    fn tls_config(&self, tls: Tls) -> EmailConfig {
        let mut config = EmailConfig::loopback(
            self.port,
            "herald@example.test".parse().unwrap(),
            vec![A.parse().unwrap()],
        );
        config.tls = tls;
        config.tls_ca = Some(self.tls_ca());
        config
    }

    /// Everything recorded so far, one JSON object per message that reached DATA.
    fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.record).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    fn connector(&self) -> Email {
        let to = vec![A.parse().unwrap(), B.parse().unwrap()];
        Email::new(
            EmailConfig::loopback(self.port, "herald <herald@example.test>".parse().unwrap(), to),
            crate::loopback(),
        )
        .unwrap()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.record);
        let _ = std::fs::remove_file(&self.ca);
    }
}

fn header<'a>(record: &'a Value, name: &str) -> &'a str {
    let headers = record["headers"].as_array().unwrap();
    let found = headers.iter().find(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name));
    found.and_then(|pair| pair[1].as_str()).unwrap_or_else(|| panic!("no {name} in {record}"))
}

fn rcpt(record: &Value) -> Vec<&str> {
    record["rcpt_tos"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect()
}

fn message(title: &str) -> Message {
    Message {
        title: title.to_owned(),
        body: "Checkout fails for **every** user.\n\n<script>alert(1)</script>\n\n- see [the runbook](https://runbooks.example/checkout)".to_owned(),
        severity: Severity::Critical,
        fields: [("region".to_owned(), "eu-west-1".to_owned())].into(),
        links: vec![Link { title: "Dashboard".to_owned(), url: "https://grafana.example/d/1".to_owned() }],
        tags: vec!["checkout".to_owned()],
    }
}

fn request<'a>(message: &'a Message, delivery_id: &'a str) -> Request<'a> {
    let now = Timestamp::from_millis(1_764_700_000_000);
    Request {
        delivery_id,
        broadcast_id: "b_01JD0000000000000000000000",
        destination: "stakeholders",
        message,
        thread: Thread::Original,
        attempt: 1,
        ambiguous: false,
        now,
        created_at: now,
        ambiguous_at: None,
    }
}

const D1: &str = "d_01JD0000000000000000000001";
const D2: &str = "d_01JD0000000000000000000002";

fn expected_id(delivery_id: &str) -> String {
    message_id(delivery_id, "example.test")
}

fn delivered_ref(report: &Report) -> &str {
    match &report.outcome {
        Outcome::Delivered { remote_ref: Some(remote_ref), unconfirmed: false } => remote_ref,
        other => panic!("not delivered: {other:?} ({report:?})"),
    }
}

#[tokio::test]
async fn delivers_one_message_with_a_text_and_an_html_alternative() {
    let server = SmtpServer::start(json!({}));
    let message = message("P1: checkout is down");
    let report = server.connector().send(&request(&message, D1)).await;
    assert_eq!(delivered_ref(&report), expected_id(D1));
    assert!(report.detail.as_deref().unwrap_or("").contains("queued as HERALDTEST"), "{report:?}");

    let records = server.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let got = &records[0];
    assert_eq!(got["event"], "accepted");
    assert_eq!(got["mail_from"], "herald@example.test");
    assert_eq!(rcpt(got), [A, B], "one transaction names both recipients");
    assert_eq!(header(got, "Message-ID"), expected_id(D1));
    assert_eq!(header(got, "Subject"), "P1: checkout is down");
    assert!(header(got, "To").contains(A) && header(got, "To").contains(B));
    assert!(header(got, "Content-Type").starts_with("multipart/alternative"), "{got}");
    let parts = got["parts"].as_array().unwrap();
    let types: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["text/plain", "text/html"], "plain first: clients show the last they can");
    let text = parts[0]["content"].as_str().unwrap();
    let html = parts[1]["content"].as_str().unwrap();
    assert!(text.contains("Checkout fails for **every** user."), "{text}");
    assert!(
        text.contains("region: eu-west-1")
            && text.contains("Dashboard: https://grafana.example/d/1")
    );
    assert!(html.contains("<strong>every</strong>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"https://runbooks.example/checkout\">the runbook</a>"),
        "{html}"
    );
    assert!(html.contains("<th align=\"left\">region</th><td>eu-west-1</td>"), "{html}");
}

#[tokio::test]
async fn a_451_is_retried_and_every_copy_carries_one_message_id() {
    let server = SmtpServer::start(json!({ "data": ["451 4.3.0 Try again later"] }));
    let connector = server.connector();
    let message = message("P1: checkout is down");
    let first = connector.send(&request(&message, D1)).await;
    let Outcome::Retry { reason, .. } = &first.outcome else { panic!("{first:?}") };
    assert!(reason.contains("451 4.3.0 Try again later"), "{reason}");
    let second = connector.send(&Request { attempt: 2, ..request(&message, D1) }).await;
    assert_eq!(delivered_ref(&second), expected_id(D1));

    let records = server.records();
    let events: Vec<&str> = records.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["rejected", "accepted"]);
    for record in &records {
        assert_eq!(header(record, "Message-ID"), expected_id(D1), "unchanged across retries");
        assert_eq!(rcpt(record), [A, B]);
    }
}

#[tokio::test]
async fn a_451_at_rcpt_is_retried_before_any_data() {
    let server = SmtpServer::start(
        json!({ "rcpt": { A: ["451 4.7.1 Greylisted"], B: ["451 4.7.1 Greylisted"] } }),
    );
    let connector = server.connector();
    let message = message("P1");
    let first = connector.send(&request(&message, D1)).await;
    assert_eq!(first.outcome.class(), "retry", "{first:?}");
    assert!(first.outcome.reason().unwrap().contains("Greylisted"), "{first:?}");
    assert!(server.records().is_empty(), "nothing reached DATA");
    let second = connector.send(&Request { attempt: 2, ..request(&message, D1) }).await;
    assert_eq!(delivered_ref(&second), expected_id(D1));
    assert_eq!(rcpt(&server.records()[0]), [A, B]);
}

#[tokio::test]
async fn a_recipient_refused_with_550_is_reported_and_the_other_still_gets_it() {
    let server = SmtpServer::start(json!({ "rcpt_always": { B: "550 5.1.1 No such user" } }));
    let message = message("P1");
    let report = server.connector().send(&request(&message, D1)).await;
    assert_eq!(delivered_ref(&report), expected_id(D1));
    let detail = report.detail.as_deref().unwrap_or("");
    assert!(detail.contains(&format!("delivered to {A}")), "{detail}");
    assert!(detail.contains(&format!("{B} (550 5.1.1 No such user)")), "{detail}");
    let records = server.records();
    assert_eq!(records.len(), 1);
    assert_eq!(rcpt(&records[0]), [A]);
}

#[tokio::test]
async fn every_recipient_refused_is_permanent() {
    let refused = "550 5.1.1 No such user";
    let server = SmtpServer::start(json!({ "rcpt_always": { A: refused, B: refused } }));
    let message = message("P1");
    let report = server.connector().send(&request(&message, D1)).await;
    let Outcome::Permanent { reason } = &report.outcome else { panic!("{report:?}") };
    assert!(reason.contains(A) && reason.contains(B) && reason.contains("550 5.1.1"), "{reason}");
    assert!(server.records().is_empty());
}

#[tokio::test]
async fn a_retry_goes_only_to_the_recipient_still_owed() {
    let server = SmtpServer::start(json!({ "rcpt": { B: ["452 4.2.2 Mailbox full"] } }));
    let connector = server.connector();
    let message = message("P1");
    let first = connector.send(&request(&message, D1)).await;
    let Outcome::Retry { reason, .. } = &first.outcome else { panic!("{first:?}") };
    assert!(reason.contains(&format!("{B} (452 4.2.2 Mailbox full)")), "{reason}");
    assert!(reason.contains(&format!("already delivered to {A}")), "{reason}");
    let second = connector.send(&Request { attempt: 2, ..request(&message, D1) }).await;
    assert_eq!(delivered_ref(&second), expected_id(D1));

    let records = server.records();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(rcpt(&records[0]), [A]);
    assert_eq!(rcpt(&records[1]), [B], "the retry does not mail {A} again");
    assert_eq!(header(&records[0], "Message-ID"), header(&records[1], "Message-ID"));
}

#[tokio::test]
async fn a_follow_up_threads_under_its_original() {
    let server = SmtpServer::start(json!({}));
    let connector = server.connector();
    let original = message("P1: checkout is down");
    let first = connector.send(&request(&original, D1)).await;
    let original_ref = delivered_ref(&first).to_owned();
    let update = Message { severity: Severity::Resolved, ..message("Checkout is back") };
    for (delivery, remote_ref) in
        [(D2, Some(original_ref.as_str())), ("d_01JD0000000000000000000003", None)]
    {
        let thread = Thread::Update {
            seq: 1,
            in_reply_to: D1,
            original_remote_ref: remote_ref,
            original: &original,
            original_at: Timestamp::from_millis(1_764_700_000_000),
        };
        let report = connector.send(&Request { thread, ..request(&update, delivery) }).await;
        assert_eq!(delivered_ref(&report), expected_id(delivery));
    }
    let records = server.records();
    assert_eq!(records.len(), 3);
    for reply in &records[1..] {
        assert_eq!(header(reply, "In-Reply-To"), original_ref);
        assert_eq!(header(reply, "References"), original_ref);
        assert_eq!(header(reply, "Subject"), "Re: P1: checkout is down");
        let text = reply["parts"][0]["content"].as_str().unwrap().replace("\r\n", "\n");
        assert!(text.starts_with("Update 1: Checkout is back\nSeverity: Resolved"), "{text}");
    }
    assert_ne!(header(&records[1], "Message-ID"), original_ref);
}

#[tokio::test]
async fn a_reply_lost_after_the_final_dot_is_unknown() {
    let server = SmtpServer::start(json!({ "drop_after_data": 1 }));
    let connector = server.connector();
    let message = message("P1");
    let first = connector.send(&request(&message, D1)).await;
    assert_eq!(first.outcome.class(), "unknown", "{first:?}");
    let second =
        connector.send(&Request { attempt: 2, ambiguous: true, ..request(&message, D1) }).await;
    assert_eq!(delivered_ref(&second), expected_id(D1));
    let records = server.records();
    let events: Vec<&str> = records.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["dropped", "accepted"],
        "the server had the first copy: a resend duplicates"
    );
    assert_eq!(header(&records[0], "Message-ID"), header(&records[1], "Message-ID"));
}

#[tokio::test]
async fn a_message_too_big_is_permanent_at_mail_from_or_after_the_data() {
    let too_big = "552 5.3.4 Message size exceeds fixed maximum message size";
    for plan in [json!({ "mail": [too_big] }), json!({ "data": [too_big] })] {
        let server = SmtpServer::start(plan.clone());
        let message = message("P1");
        let report = server.connector().send(&request(&message, D1)).await;
        let Outcome::Permanent { reason } = &report.outcome else { panic!("{plan}: {report:?}") };
        assert!(reason.contains("552 5.3.4"), "{plan}: {reason}");
    }
}

#[tokio::test]
async fn a_closed_port_is_retried() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let to = vec![A.parse().unwrap()];
    let config = EmailConfig::loopback(port, "herald@example.test".parse().unwrap(), to);
    let message = message("P1");
    let report = Email::new(config, crate::loopback()).unwrap().send(&request(&message, D1)).await;
    assert_eq!(report.outcome.class(), "retry", "{report:?}");
}

/// The outbound policy covers SMTP too: a loopback server, named or written as an
/// address, is refused for good without a connection unless loopback is allowed; allowed,
/// the same name is reached.
#[tokio::test]
async fn a_loopback_smtp_server_is_refused_without_the_allowance() {
    let listener = crate::outbound::Listener::start().await;
    let message = message("P1");
    let to = vec![A.parse().unwrap()];
    for (host, rule) in [
        ("127.0.0.1", "127.0.0.1 is a loopback address; "),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address of 127.0.0.1, a "),
        ("localhost", "localhost resolves to "),
    ] {
        let mut config = EmailConfig::loopback(
            listener.port,
            "herald@example.test".parse().unwrap(),
            to.clone(),
        );
        config.host = host.to_owned();
        // `tls = "none"` is only for the names of loopback; nothing is sent here anyway.
        config.tls = Tls::Opportunistic;
        let connector = Email::new(config, Outbound::default()).unwrap();
        let report = connector.send(&request(&message, D1)).await;
        assert_eq!(report.outcome.class(), "permanent", "{host}: {report:?}");
        let reason = report.outcome.reason().unwrap();
        assert!(reason.starts_with(rule), "{host}: {reason}");
        assert!(reason.contains("unless `[outbound] allow_networks` includes"), "{reason}");
    }
    assert_eq!(listener.accepted(), 0, "herald connected to a refused SMTP server");

    let server = SmtpServer::start(json!({}));
    let mut config = EmailConfig::loopback(server.port, "herald@example.test".parse().unwrap(), to);
    config.host = "localhost".to_owned();
    let report = Email::new(config, Outbound::allowing_loopback())
        .unwrap()
        .send(&request(&message, D1))
        .await;
    delivered_ref(&report);
    assert_eq!(server.records().len(), 1);
}

#[tokio::test]
async fn required_tls_refuses_a_server_without_starttls_and_opportunistic_sends_in_clear() {
    let server = SmtpServer::start(json!({}));
    let message = message("P1");
    for (tls, class) in [(Tls::Required, "permanent"), (Tls::Opportunistic, "delivered")] {
        let mut config = EmailConfig::loopback(
            server.port,
            "herald@example.test".parse().unwrap(),
            vec![A.parse().unwrap()],
        );
        config.tls = tls;
        let report =
            Email::new(config, crate::loopback()).unwrap().send(&request(&message, D1)).await;
        assert_eq!(report.outcome.class(), class, "{tls:?}: {report:?}");
        if class == "permanent" {
            assert!(
                report.outcome.reason().unwrap().contains("does not offer STARTTLS"),
                "{report:?}"
            );
        }
    }
    let records = server.records();
    assert_eq!(records.len(), 1, "only the opportunistic attempt reached DATA");
    assert_eq!(records[0]["tls"], Value::Null, "sent in clear text");
}

#[tokio::test]
async fn logs_in_and_a_refused_login_is_permanent_without_the_password() {
    let server = SmtpServer::start(json!({ "login": ["herald", "s3cret-pw"] }));
    let message = message("P1");
    for (password, class) in [("s3cret-pw", "delivered"), ("wrong-pw", "permanent")] {
        let mut config = EmailConfig::loopback(
            server.port,
            "herald@example.test".parse().unwrap(),
            vec![A.parse().unwrap()],
        );
        config.username = Some("herald".to_owned());
        config.password = Some(password.to_owned());
        let report =
            Email::new(config, crate::loopback()).unwrap().send(&request(&message, D1)).await;
        assert_eq!(report.outcome.class(), class, "{report:?}");
        let shown = format!("{report:?}");
        assert!(!shown.contains(password), "{shown}");
        if class == "permanent" {
            assert!(report.outcome.reason().unwrap().contains("535"), "{report:?}");
        }
    }
    assert_eq!(server.records().len(), 1);
}

/// One attempt bounded as the engine bounds it (its `timeout`): past `limit` it is
/// `Unknown`, as the engine records it.
async fn attempt(connector: &Email, request: &Request<'_>, limit: Duration) -> Report {
    match tokio::time::timeout(limit, connector.send(request)).await {
        Ok(report) => report,
        Err(_) => Report {
            outcome: Outcome::Unknown { reason: "the engine's timeout".to_owned() },
            status: None,
            detail: None,
            pause: None,
        },
    }
}

fn tls_version(record: &Value) -> &str {
    record["tls"].as_str().unwrap_or_else(|| panic!("not over TLS: {record}"))
}

#[tokio::test]
async fn starttls_is_used_whenever_the_server_offers_it() {
    let server = SmtpServer::start(json!({ "tls": "starttls", "require_starttls": true }));
    let message = message("P1");
    for tls in [Tls::Required, Tls::Opportunistic] {
        let report = Email::new(server.tls_config(tls), crate::loopback())
            .unwrap()
            .send(&request(&message, D1))
            .await;
        assert_eq!(delivered_ref(&report), expected_id(D1), "{tls:?}");
    }
    let records = server.records();
    assert_eq!(records.len(), 2);
    for record in &records {
        assert!(tls_version(record).starts_with("TLSv1."), "{record}");
        assert_eq!(rcpt(record), [A]);
    }
}

#[tokio::test]
async fn smtps_is_tls_from_the_first_byte() {
    let server = SmtpServer::start(json!({ "tls": "implicit" }));
    let mut config = server.tls_config(Tls::Required);
    config.implicit_tls = true;
    let message = message("P1");
    let report = Email::new(config, crate::loopback()).unwrap().send(&request(&message, D1)).await;
    assert_eq!(delivered_ref(&report), expected_id(D1));
    let records = server.records();
    assert_eq!(records.len(), 1);
    assert!(tls_version(&records[0]).starts_with("TLSv1."), "{}", records[0]);
}

#[tokio::test]
async fn a_certificate_herald_does_not_trust_is_permanent_and_names_tls_ca() {
    let message = message("P1");
    let stranger = SmtpServer::start(json!({ "tls": "starttls" }));
    for (mode, implicit) in [("starttls", false), ("implicit", true)] {
        let server = SmtpServer::start(json!({ "tls": mode }));
        // No `tls_ca`, then the CA of another server: the issuer is unknown either way.
        for ca in [None, Some(stranger.tls_ca())] {
            let mut config = server.tls_config(Tls::Required);
            config.implicit_tls = implicit;
            config.tls_ca = ca.clone();
            let report =
                Email::new(config, crate::loopback()).unwrap().send(&request(&message, D1)).await;
            let Outcome::Permanent { reason } = &report.outcome else {
                panic!("{mode}, {ca:?}: {report:?}")
            };
            assert!(reason.contains("not trusted") && reason.contains("UnknownIssuer"), "{reason}");
            assert!(reason.contains("`tls_ca = \"file:/path/ca.pem\"`"), "{reason}");
            if ca.is_some() {
                assert!(reason.contains(&stranger.ca.display().to_string()), "{reason}");
            }
        }
        assert!(server.records().is_empty(), "{mode}: nothing was sent");
    }
}

#[tokio::test]
async fn logs_in_over_tls_and_a_wrong_password_is_permanent() {
    let server = SmtpServer::start(json!({ "tls": "starttls", "login": ["herald", "s3cret-pw"] }));
    let message = message("P1");
    for (password, class) in [("s3cret-pw", "delivered"), ("wrong-pw", "permanent")] {
        let mut config = server.tls_config(Tls::Required);
        config.username = Some("herald".to_owned());
        config.password = Some(password.to_owned());
        let report =
            Email::new(config, crate::loopback()).unwrap().send(&request(&message, D1)).await;
        assert_eq!(report.outcome.class(), class, "{report:?}");
        assert!(!format!("{report:?}").contains(password), "{report:?}");
        if class == "permanent" {
            assert!(report.outcome.reason().unwrap().contains("535"), "{report:?}");
        }
    }
    let records = server.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["login"], "herald");
    assert!(tls_version(&records[0]).starts_with("TLSv1."), "{}", records[0]);
}

/// The `command_timeout` of the stall tests: far below the engine stand-in's limit.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

/// The engine stand-in's limit in the stall tests.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_stall_before_the_message_is_handed_over_is_retried_before_the_engine_times_out() {
    let message = message("P1");
    let steps = [
        ("ehlo", "the greeting"),
        ("starttls", "STARTTLS"),
        ("auth", "AUTH"),
        ("mail", "MAIL FROM"),
        ("rcpt", "RCPT TO"),
        ("data", "DATA"),
    ];
    for (stall, step) in steps {
        let server = SmtpServer::start(json!({
            "tls": "starttls",
            "login": ["herald", "pw"],
            "stall": stall,
        }));
        let mut config = server.tls_config(Tls::Required);
        config.username = Some("herald".to_owned());
        config.password = Some("pw".to_owned());
        config.command_timeout = COMMAND_TIMEOUT;
        let connector = Email::new(config, crate::loopback()).unwrap();
        let started = Instant::now();
        let report = attempt(&connector, &request(&message, D1), ATTEMPT_LIMIT).await;
        let Outcome::Retry { reason, .. } = &report.outcome else { panic!("{stall}: {report:?}") };
        assert!(reason.contains(&format!("did not answer {step} within 300ms")), "{reason}");
        assert!(reason.contains("`command_timeout`"), "{reason}");
        assert!(started.elapsed() < ATTEMPT_LIMIT / 2, "{stall}: {:?}", started.elapsed());
        assert!(server.records().is_empty(), "{stall}: nothing reached the end of DATA");
    }
}

#[tokio::test]
async fn a_stall_after_the_final_dot_waits_for_the_engine_and_is_unknown() {
    let server = SmtpServer::start(json!({ "stall": "end_of_data" }));
    let mut config = EmailConfig::loopback(
        server.port,
        "herald@example.test".parse().unwrap(),
        vec![A.parse().unwrap()],
    );
    config.command_timeout = COMMAND_TIMEOUT;
    let message = message("P1");
    let limit = Duration::from_secs(2);
    let started = Instant::now();
    let report =
        attempt(&Email::new(config, crate::loopback()).unwrap(), &request(&message, D1), limit)
            .await;
    // Not a `Retry` after `command_timeout`: the server holds the message.
    assert_eq!(report.outcome.reason(), Some("the engine's timeout"), "{report:?}");
    assert!(started.elapsed() >= limit);
    let records = server.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["event"], "stalled");
    assert_eq!(header(&records[0], "Message-ID"), expected_id(D1));
}
