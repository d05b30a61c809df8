//! Unit tests of the e-mail connector: one classification row per line of
//! shared/DESTINATIONS.md §9, how recipients' fates settle a delivery, configuration
//! parsing, a password-free `Debug`, and rendering (Message-ID, subject, HTML escaping).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use herald_core::{Message, Outcome, Timestamp};

use super::config::parse_server;
use super::{
    DEFAULT_COMMAND_TIMEOUT, Email, EmailConfig, Progress, Step, Tls, compose, lost, markdown,
    message_id, reply, settle,
};
use crate::settings::{Entry, Item, Table, Value};
use crate::{Request, Thread};

/// (DESTINATIONS.md §9 line, step, reply code and text or `None` for a lost connection, class)
type ReplyRow = (&'static str, Step, Option<(u16, &'static str)>, &'static str);

/// (case, progress after the attempt, attempt-wide failure, deferred now, class, words)
type SettleRow<'a> = (
    &'static str,
    Progress,
    Option<Outcome>,
    &'a [(String, String)],
    &'static str,
    &'static [&'static str],
);

/// (server URL, host, port and implicit TLS, or words of the problem)
type ServerRow = (&'static str, Result<(&'static str, u16, bool), &'static str>);

/// (case, entries replacing the base ones, words of the problem)
type ProblemRow = (&'static str, Vec<(&'static str, Value)>, &'static str);

#[test]
fn every_row_of_the_classification_table() {
    let table: &[ReplyRow] = &[
        (
            "2yz success: final 250",
            Step::EndOfData,
            Some((250, "2.0.0 Ok: queued as 4AB")),
            "delivered",
        ),
        ("4yz transient: 451 at RCPT", Step::Rcpt, Some((451, "4.3.0 Try later")), "retry"),
        ("4yz transient: 450 at MAIL FROM", Step::MailFrom, Some((450, "4.7.1 Busy")), "retry"),
        (
            "4yz transient: 451 after the data",
            Step::EndOfData,
            Some((451, "4.3.0 Queue full")),
            "retry",
        ),
        ("4.2.2 mailbox full", Step::Rcpt, Some((452, "4.2.2 Mailbox full")), "retry"),
        ("421 service shutting down", Step::Connect, Some((421, "4.3.2 Shutting down")), "retry"),
        ("421 mid-transaction", Step::Data, Some((421, "4.4.2 Timeout")), "retry"),
        (
            "5yz permanent: 5.1.1 bad mailbox",
            Step::Rcpt,
            Some((550, "5.1.1 No such user")),
            "permanent",
        ),
        ("5.7.x policy", Step::EndOfData, Some((554, "5.7.1 Rejected by policy")), "permanent"),
        ("5.7.x authentication", Step::Auth, Some((535, "5.7.8 Bad credentials")), "permanent"),
        (
            "552/5.3.4 too big at MAIL FROM (SIZE)",
            Step::MailFrom,
            Some((552, "5.3.4 Too big")),
            "permanent",
        ),
        (
            "552/5.3.4 too big after the data",
            Step::EndOfData,
            Some((552, "5.3.4 Too big")),
            "permanent",
        ),
        ("lost after the final dot: ambiguous", Step::EndOfData, None, "unknown"),
        ("refused connection: nothing sent", Step::Connect, None, "retry"),
        ("TLS handshake failed: nothing sent", Step::StartTls, None, "retry"),
        ("lost at RCPT: nothing sent", Step::Rcpt, None, "retry"),
        ("lost at DATA: nothing sent", Step::Data, None, "retry"),
        ("lost while writing the content: no final dot", Step::Content, None, "retry"),
    ];
    for &(line, step, answer, class) in table {
        let outcome = match answer {
            Some((code, text)) => reply(step, code, text),
            None => lost(step, "connection reset by peer"),
        };
        assert_eq!(outcome.class(), class, "{line}: {outcome:?}");
        if let (Some((code, text)), Some(reason)) = (answer, outcome.reason()) {
            assert!(reason.contains(&format!("{code} {text}")), "{line}: {reason}");
        }
    }
}

fn progress(delivered: &[&str], refused: &[(&str, &str)]) -> Progress {
    Progress {
        delivered: delivered.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>(),
        refused: refused
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn recipients_fates_settle_the_delivery() {
    let refused = [("b@x", "550 5.1.1 No such user")];
    let deferred = vec![("b@x".to_owned(), "451 4.3.0 Later".to_owned())];
    let retry = Outcome::Retry { reason: "the SMTP connection failed".into(), after: None };
    let unknown = Outcome::Unknown { reason: "lost after the final dot".into() };
    let table: Vec<SettleRow<'_>> = vec![
        ("all delivered", progress(&["a@x", "b@x"], &[]), None, &[], "delivered", &[]),
        (
            "one refused for good",
            progress(&["a@x"], &refused),
            None,
            &[],
            "delivered",
            &["delivered to a@x", "b@x (550 5.1.1 No such user)"],
        ),
        (
            "one deferred",
            progress(&["a@x"], &[]),
            None,
            &deferred,
            "retry",
            &["b@x (451 4.3.0 Later)", "already delivered to a@x"],
        ),
        (
            "all refused",
            progress(&[], &[("a@x", "550 x"), ("b@x", "550 y")]),
            None,
            &[],
            "permanent",
            &["a@x (550 x)", "b@x (550 y)"],
        ),
        (
            "connection failed",
            progress(&["a@x"], &[]),
            Some(retry),
            &[],
            "retry",
            &["already delivered to a@x"],
        ),
        (
            "reply lost",
            progress(&[], &[]),
            Some(unknown),
            &[],
            "unknown",
            &["lost after the final dot"],
        ),
    ];
    for (case, progress, failure, deferred, class, words) in table {
        let (outcome, detail) = settle(&progress, failure, deferred, "<d@x>");
        assert_eq!(outcome.class(), class, "{case}: {outcome:?}");
        let said =
            format!("{} {}", outcome.reason().unwrap_or(""), detail.as_deref().unwrap_or(""));
        for word in words {
            assert!(said.contains(word), "{case}: {said}");
        }
        if class == "delivered" {
            assert_eq!(outcome, Outcome::delivered(Some("<d@x>".into())), "{case}");
        }
    }
}

fn string(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn parsed(entries: &[(&str, Value)]) -> Result<EmailConfig, Vec<String>> {
    let entries = entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Entry {
            key: (*key).to_owned(),
            key_at: i * 100,
            value: value.clone(),
            value_at: i * 100 + 10,
        })
        .collect();
    let env = |name: &str| (name == "SMTP_PASSWORD").then(|| "hunter2".to_owned());
    let mut table = Table::new(entries, 0, &env);
    let config = super::config::parse(&mut table);
    match config {
        Some(config) => Ok(config.downcast_ref::<EmailConfig>().unwrap().clone()),
        None => Err(table.problems().iter().map(|p| format!("{}: {}", p.key, p.message)).collect()),
    }
}

fn list(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Item { value: string(s), at: 0 }).collect())
}

#[test]
fn the_issue_s_example_parses() {
    let config = parsed(&[
        ("smtp", string("smtp://mail.example.com:587")),
        ("tls", string("required")),
        ("username", string("herald")),
        ("password", string("${SMTP_PASSWORD}")),
        ("from", string("herald <herald@example.com>")),
        ("to", list(&["oncall@example.com", "cto@example.com"])),
    ])
    .unwrap();
    assert_eq!(
        (config.host.as_str(), config.port, config.implicit_tls),
        ("mail.example.com", 587, false)
    );
    assert_eq!(config.tls, Tls::Required);
    assert_eq!(config.password.as_deref(), Some("hunter2"));
    assert_eq!(config.from_domain(), "example.com");
    assert_eq!(config.to.len(), 2);
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2") && shown.contains("[redacted]"), "{shown}");
}

#[test]
fn server_urls_and_their_default_ports() {
    let table: &[ServerRow] = &[
        ("smtp://mail.example.com", Ok(("mail.example.com", 587, false))),
        ("smtps://mail.example.com", Ok(("mail.example.com", 465, true))),
        ("smtp://127.0.0.1:2525", Ok(("127.0.0.1", 2525, false))),
        ("smtp://[::1]:25", Ok(("::1", 25, false))),
        ("https://mail.example.com", Err("smtp:// or smtps://")),
        ("smtp://user:secret@mail.example.com", Err("`username` and `password`")),
        ("smtp://mail.example.com/path", Err("only a host and a port")),
        ("mail.example.com", Err("not a valid URL")),
    ];
    for (text, expected) in table {
        match (parse_server(text), expected) {
            (Ok((host, port, tls)), Ok(want)) => {
                assert_eq!((host.as_str(), port, tls), *want, "{text}")
            }
            (Err(problem), Err(words)) => {
                assert!(problem.contains(words), "{text}: {problem}");
                assert!(!problem.contains("secret"), "{text}: {problem}");
            }
            (got, _) => panic!("{text}: {got:?}"),
        }
    }
}

#[test]
fn unsafe_or_wrong_settings_are_refused_with_the_key() {
    let base = |extra: Vec<(&'static str, Value)>| {
        let mut entries = vec![
            ("smtp", string("smtp://mail.example.com")),
            ("from", string("herald@example.com")),
            ("to", list(&["a@example.com"])),
        ];
        for (key, value) in extra {
            entries.retain(|(k, _)| *k != key);
            entries.push((key, value));
        }
        parsed(&entries)
    };
    let table: Vec<ProblemRow> = vec![
        ("clear text off loopback", vec![("tls", string("none"))], "tls: `tls = \"none\"`"),
        (
            "smtps is always TLS",
            vec![("smtp", string("smtps://m.example.com")), ("tls", string("opportunistic"))],
            "tls: `smtps://`",
        ),
        (
            "a login needs both",
            vec![("username", string("herald"))],
            "username: `username` and `password`",
        ),
        (
            "a bad address",
            vec![("to", list(&["a@example.com", "not an address"]))],
            "to: \"not an address\"",
        ),
        ("an empty list", vec![("to", Value::Array(Vec::new()))], "to: the list is empty"),
        ("a bad sender", vec![("from", string("herald"))], "from: \"herald\""),
        ("an unknown mode", vec![("tls", string("requried"))], "did you mean \"required\""),
    ];
    for (case, extra, words) in table {
        let problems = base(extra).unwrap_err();
        assert!(problems.iter().any(|p| p.contains(words)), "{case}: {problems:?}");
    }
    let loopback =
        base(vec![("smtp", string("smtp://127.0.0.1:2525")), ("tls", string("none"))]).unwrap();
    assert_eq!(loopback.tls, Tls::None);
    let single = base(vec![("to", string("a@example.com"))]).unwrap();
    assert_eq!(single.to.len(), 1, "a single string is a list of one");
}

/// A CA certificate (EC P-256, self-signed, `CN=herald unit-test CA`), only parsed here.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBozCCAUmgAwIBAgIUIjsjFsWLXNWrVjtCa/XUWjKIRTMwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTaGVyYWxkIHVuaXQtdGVzdCBDQTAgFw0yNjEyMDMwMTA5MDNa
GA8yMTI2MTEwOTAxMDkwM1owHjEcMBoGA1UEAwwTaGVyYWxkIHVuaXQtdGVzdCBD
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABLLG2ISoxkOMSMn5uUay4zX+f3QB
tTD64Bs6tsyvAiCzjJl9ZtVr7oDdl51n4Zc/uqHBwmXOMOuo4DJqG0+LIgejYzBh
MB0GA1UdDgQWBBSfwSOtsSUggE87q9nJBNNQ58uJrzAfBgNVHSMEGDAWgBSfwSOt
sSUggE87q9nJBNNQ58uJrzAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIC
BDAKBggqhkjOPQQDAgNIADBFAiEA8ARAG2In/y0x4V8Ja1uVlgCuFvM8A/uJbhfq
6zKdA3cCIGuef/w6rGAZ7wdevyW7OUSgbvt9H6VsJUcJTjD3GSAN
-----END CERTIFICATE-----
";

fn base_entries() -> Vec<(&'static str, Value)> {
    vec![
        ("smtp", string("smtp://mail.example.com")),
        ("from", string("herald@example.com")),
        ("to", list(&["a@example.com"])),
    ]
}

#[test]
fn a_private_ca_is_read_from_a_file_and_checked_at_configuration_time() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        format!("file:{}", path.display())
    };
    let good = write("ca.pem", CA_PEM);
    let mut entries = base_entries();
    entries.push(("tls_ca", string(&good)));
    let config = parsed(&entries).unwrap();
    let ca = config.tls_ca.clone().unwrap();
    assert_eq!(ca.pem.trim(), CA_PEM.trim());
    assert!(ca.source.contains("ca.pem"), "{ca:?}");
    let shown = format!("{config:?}");
    assert!(shown.contains("1 certificate(s)") && !shown.contains("MIIB"), "{shown}");
    assert_eq!(config.command_timeout, DEFAULT_COMMAND_TIMEOUT);
    Email::new(config, crate::outbound::Outbound::default()).unwrap();

    let missing = format!("file:{}", dir.path().join("absent.pem").display());
    let key_only =
        write("key.pem", "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n");
    let damaged = write(
        "damaged.pem",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    let table = [
        (missing.as_str(), "cannot read"),
        (key_only.as_str(), "holds no certificate"),
        (damaged.as_str(), "cannot be a trust root"),
        ("/etc/herald/mail-ca.pem", "the inline secret holds no certificate"),
    ];
    for (value, words) in table {
        let mut entries = base_entries();
        entries.push(("tls_ca", string(value)));
        let problems = parsed(&entries).unwrap_err();
        assert!(
            problems.iter().any(|p| p.starts_with("tls_ca: ") && p.contains(words)),
            "{value}: {problems:?}"
        );
        let shows_fix =
            problems.iter().any(|p| p.contains("tls_ca = \"file:/etc/herald/mail-ca.pem\""));
        assert!(shows_fix || value == missing, "{value}: the fix is shown: {problems:?}");
    }
}

#[test]
fn the_command_timeout_is_a_duration_and_a_ca_needs_tls() {
    let mut entries = base_entries();
    entries.push(("command_timeout", string("250ms")));
    assert_eq!(parsed(&entries).unwrap().command_timeout, Duration::from_millis(250));
    let table: Vec<ProblemRow> = vec![
        ("zero", vec![("command_timeout", string("0s"))], "command_timeout: "),
        ("not a duration", vec![("command_timeout", Value::Integer(5))], "command_timeout: "),
        (
            "a CA without TLS",
            vec![
                ("smtp", string("smtp://127.0.0.1:2525")),
                ("tls", string("none")),
                ("tls_ca", string(CA_PEM)),
            ],
            "tls_ca: `tls_ca` has no use",
        ),
    ];
    for (case, extra, words) in table {
        let mut entries = base_entries();
        for (key, value) in extra {
            entries.retain(|(k, _)| *k != key);
            entries.push((key, value));
        }
        let problems = parsed(&entries).unwrap_err();
        assert!(problems.iter().any(|p| p.contains(words)), "{case}: {problems:?}");
    }
}

fn request<'a>(message: &'a Message, thread: Thread<'a>) -> Request<'a> {
    Request {
        delivery_id: "d_01JD0000000000000000000002",
        broadcast_id: "b_1",
        destination: "mail",
        message,
        thread,
        attempt: 3,
        ambiguous: false,
        now: Timestamp::from_millis(1_764_700_999_000),
        created_at: Timestamp::from_millis(1_764_700_000_000),
        ambiguous_at: None,
    }
}

#[test]
fn message_ids_are_stable_dot_atoms() {
    assert_eq!(message_id("d_01JD", "example.com"), "<d_01JD@example.com>");
    assert_eq!(message_id("d 1<>@x", "example.com"), "<d_1___x@example.com>");
}

#[test]
fn an_update_replies_under_the_original_and_every_attempt_has_the_same_headers() {
    let config = EmailConfig::loopback(
        25,
        "herald@example.com".parse().unwrap(),
        vec!["a@example.com".parse().unwrap()],
    );
    let original = Message { title: "P1:  checkout\ndown".into(), ..Message::default() };
    let update = Message { title: "Back".into(), ..Message::default() };
    let thread = Thread::Update {
        seq: 2,
        in_reply_to: "d_01JD0000000000000000000001",
        original_remote_ref: None,
        original: &original,
        original_at: Timestamp::from_millis(0),
    };
    let headers = |bytes: Vec<u8>| {
        let text = String::from_utf8(bytes).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap().to_owned();
        // The MIME boundary is random; everything else must repeat exactly.
        head.lines().filter(|l| !l.contains("boundary")).collect::<Vec<_>>().join("\n")
    };
    let first = headers(compose(&config, &request(&update, thread)).unwrap());
    let again = headers(
        compose(
            &config,
            &Request { now: Timestamp::from_millis(1_764_800_000_000), ..request(&update, thread) },
        )
        .unwrap(),
    );
    assert_eq!(first, again);
    for line in [
        "Subject: Re: P1: checkout down",
        "Message-ID: <d_01JD0000000000000000000002@example.com>",
        "In-Reply-To: <d_01JD0000000000000000000001@example.com>",
        "References: <d_01JD0000000000000000000001@example.com>",
        "Date: Tue, 02 Dec 2025 18:26:40 +0000",
    ] {
        assert!(first.contains(line), "{line} in\n{first}");
    }
}

#[test]
fn markdown_becomes_html_with_raw_html_and_odd_links_defused() {
    let table: &[(&str, &str)] = &[
        ("**bold** and `code`", "<p><strong>bold</strong> and <code>code</code></p>\n"),
        ("<b onclick=x>hi</b>", "<p>&lt;b onclick=x&gt;hi&lt;/b&gt;</p>\n"),
        ("<div>\nblock\n</div>", "&lt;div&gt;\nblock\n&lt;/div&gt;"),
        ("[x](javascript:alert(1))", "<p><a href=\"#\">x</a></p>\n"),
        (
            "[ok](https://example.com/?a=1&b=2)",
            "<p><a href=\"https://example.com/?a=1&amp;b=2\">ok</a></p>\n",
        ),
        (
            "| a |\n|---|\n| 1 |",
            "<table><thead><tr><th>a</th></tr></thead><tbody>\n<tr><td>1</td></tr>\n</tbody></table>\n",
        ),
    ];
    for (source, html) in table {
        assert_eq!(markdown(source), *html, "{source}");
    }
}
