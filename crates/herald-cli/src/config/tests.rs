//! Tests of `herald.toml` parsing: a full example, every kind of error with its location,
//! secrets, and target resolution.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_api::{ApiToken, Scope, TokenHash};
use herald_connectors::http;
use herald_connectors::outbound::{Outbound, Server, parse_network};
use herald_connectors::settings::{Table, format_duration, parse_duration};
use herald_connectors::webhook::WebhookConfig;
use herald_connectors::{
    Connector, ConnectorConfig, ConnectorError, Defaults, Kind, KindSettings, webhook,
};
use herald_core::{Capabilities, CircuitPolicy, FailureRate, OnUnknown, RateLimit, RetryPolicy};
use herald_engine::LaneSettings;

use super::values::parse_rate_limit;
use super::{Config, ConfigError, Database, DestinationConfig, RetentionConfig, ServerConfig};

const OPS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const LEAKY: &str = "hunter2-do-not-print";

fn env(name: &str) -> Option<String> {
    match name {
        "OPS_WEBHOOK_SECRET" => Some(OPS_SECRET.to_owned()),
        "NOT_A_WHSEC" => Some(LEAKY.to_owned()),
        "BLANK" => Some("  ".to_owned()),
        "SLACK_HOOK" => Some("https://hooks.slack.com/services/T0/B0/X".to_owned()),
        "SLACK_TOKEN" => Some("xoxb-1".to_owned()),
        "DATABASE_URL" => Some("postgres://herald:pg-pass-from-env@db.internal/herald".to_owned()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    Config::parse(text, "herald.toml", &env).map_err(|e| e.0)
}

fn problems(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(config) => panic!("expected errors, got {config:?}\n--- input ---\n{text}"),
        Err(errors) => errors,
    }
}

/// The webhook settings of a destination that must be a webhook.
fn webhook_settings(destination: &DestinationConfig) -> &WebhookConfig {
    destination.connector.downcast_ref::<WebhookConfig>().unwrap()
}

/// Asserts two configurations are equal, comparing each destination's kind settings
/// through its own type.
fn assert_same(config: &Config, expected: &Config) {
    assert_eq!(config.server, expected.server);
    assert_eq!(config.groups, expected.groups);
    assert_eq!(config.retention, expected.retention);
    assert_eq!(config.outbound, expected.outbound);
    assert_eq!(config.tokens, expected.tokens);
    let names = |c: &Config| c.destinations.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(config), names(expected));
    for (got, want) in config.destinations.iter().zip(&expected.destinations) {
        assert_eq!(got.settings, want.settings, "{}", got.name);
        assert_eq!(webhook_settings(got), webhook_settings(want), "{}", got.name);
    }
}

fn webhook(name: &str, url: &str) -> DestinationConfig {
    DestinationConfig {
        name: name.to_owned(),
        connector: ConnectorConfig::new(WebhookConfig {
            url: url.to_owned(),
            secret: None,
            headers: Vec::new(),
        }),
        settings: LaneSettings::default(),
    }
}

#[test]
fn full_example_round_trips_with_defaults_where_omitted() {
    let text = r#"
[server]
listen = "0.0.0.0:9000"
database = "sqlite:///var/lib/herald/herald.db"
shutdown_grace = "30s"

[destinations.ops-webhook]
kind = "webhook"
url = "https://hooks.example/herald"
secret = "${OPS_WEBHOOK_SECRET}"
headers = { "X-Team" = "sre", "X-Env" = "prod" }
max_attempts = 5
backoff_base = "2s"
backoff_max = "1h30m"
max_age = "2d"
timeout = "2500ms"
rate_limit = "5/250ms"
concurrency = 2
on_unknown = "hold"
dedupe = false
circuit_failures = 3
circuit_failure_rate = 0.5
circuit_cool_down = "1m"

[destinations.audit]
kind = "webhook"
url = "http://127.0.0.1:9999/audit"
max_attempts = 3

[groups]
p1 = ["ops-webhook", "audit"]
audit-only = ["audit"]

[[tokens]]
name = "alertmanager"
hash = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
scopes = ["send"]
"#;
    let config = parse(text).unwrap();

    let ops = DestinationConfig {
        name: "ops-webhook".into(),
        connector: ConnectorConfig::new(WebhookConfig {
            url: "https://hooks.example/herald".into(),
            secret: Some(OPS_SECRET.into()),
            headers: vec![("X-Team".into(), "sre".into()), ("X-Env".into(), "prod".into())],
        }),
        settings: LaneSettings {
            policy: RetryPolicy {
                max_attempts: 5,
                backoff_base: Duration::from_secs(2),
                backoff_max: Duration::from_secs(5400),
                max_age: Duration::from_secs(2 * 86400),
                timeout: Duration::from_millis(2500),
                on_unknown: OnUnknown::Hold,
            },
            rate_limit: Some(RateLimit {
                count: NonZeroU32::new(5).unwrap(),
                per: Duration::from_millis(250),
            }),
            concurrency: 2,
            circuit: CircuitPolicy {
                min_failures: 3,
                failure_rate: FailureRate::new(0.5).unwrap(),
                cool_down: Some(Duration::from_secs(60)),
            },
            dedupe: Some(false),
        },
    };
    let mut audit = webhook("audit", "http://127.0.0.1:9999/audit");
    audit.settings.policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };

    let expected = Config {
        server: ServerConfig {
            listen: "0.0.0.0:9000".parse().unwrap(),
            database: Database::Sqlite { path: PathBuf::from("/var/lib/herald/herald.db") },
            shutdown_grace: Duration::from_secs(30),
            ..ServerConfig::default()
        },
        destinations: vec![ops, audit],
        groups: BTreeMap::from([
            ("p1".to_owned(), vec!["ops-webhook".to_owned(), "audit".to_owned()]),
            ("audit-only".to_owned(), vec!["audit".to_owned()]),
        ]),
        retention: RetentionConfig::default(),
        tokens: vec![ApiToken {
            name: "alertmanager".into(),
            hash: TokenHash::of("test"),
            scopes: vec![Scope::Send],
        }],
        outbound: Outbound::default(),
        ..Config::default()
    };
    assert_same(&config, &expected);
    assert_eq!(config.destination("audit").map(DestinationConfig::kind), Some("webhook"));
    assert!(config.destination("nope").is_none());
}

#[test]
fn empty_file_is_the_defaults() {
    for text in ["", "\n# nothing here\n", "[server]\n"] {
        let config = parse(text).unwrap();
        assert_same(&config, &Config::default());
    }
    let server = ServerConfig::default();
    assert_eq!(server.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(server.database, Database::Sqlite { path: PathBuf::from("herald.db") });
    assert_eq!(server.shutdown_grace, Duration::from_secs(10));
}

#[test]
fn a_postgres_database_and_a_node_id() {
    let config = parse(
        "[server]\ndatabase = \"postgres://herald:hunter2@db.internal:5432/herald\"\nnode_id = \"herald-a\"\n",
    )
    .unwrap();
    let url = "postgres://herald:hunter2@db.internal:5432/herald".to_string();
    assert_eq!(config.server.database, Database::Postgres { url });
    assert_eq!(config.server.node_id(), "herald-a");
    assert!(!format!("{config:?}").contains("hunter2"), "the password is in Debug output");
    let config = parse("[server]\ndatabase = \"postgresql://db/herald\"\n").unwrap();
    assert!(matches!(config.server.database, Database::Postgres { .. }));
    let default = config.server.node_id();
    assert!(default.ends_with(&format!("-{}", std::process::id())), "{default}");
}

#[test]
fn server_settings_and_relative_sqlite_path() {
    let config = parse(
        "[server]\nlisten = \"[::1]:0\"\ndatabase = \"sqlite://data/herald.db\"\nshutdown_grace = \"0s\"\n",
    )
    .unwrap();
    assert_eq!(config.server.listen, "[::1]:0".parse::<SocketAddr>().unwrap());
    assert_eq!(config.server.database, Database::Sqlite { path: PathBuf::from("data/herald.db") });
    assert_eq!(config.server.shutdown_grace, Duration::ZERO);
}

/// A destination that is valid up to line 3; a case adds line 4.
const BASE: &str =
    "[destinations.hook]\nkind = \"webhook\"\nurl = \"https://hooks.example/herald\"\n";

#[test]
fn each_bad_config_reports_key_location_and_advice() {
    let long_name = "a".repeat(65);
    let long =
        format!("[destinations.{long_name}]\nkind = \"webhook\"\nurl = \"https://x.example\"\n");
    let long_key = format!("destinations.{long_name}");
    let base = |extra: &str| format!("{BASE}{extra}\n");
    #[rustfmt::skip]
    let cases: Vec<(String, &str, &str, &str)> = vec![
        // Syntax.
        ("[server]\nlisten = localhost\n".into(), "", "2:10", "invalid TOML: string values must be quoted"),
        (base("kind = \"webhook\""), "", "4:1", "duplicate key"),
        // Top level.
        ("[sever]\nlisten = \"127.0.0.1:1\"\n".into(), "sever", "1:2", "did you mean [server]?"),
        ("[metrics]\n".into(), "metrics", "1:2", "[destinations.NAME]"),
        ("listen = \"127.0.0.1:1\"\n".into(), "listen", "1:1", "belongs in the [server] table"),
        ("server = 1\n".into(), "server", "1:10", "expected a [server] table, found integer"),
        // [server].
        ("[server]\nlisen = \"127.0.0.1:1\"\n".into(), "server.lisen", "2:1", "did you mean `listen`?"),
        ("[server]\nlisten = \"localhost:8080\"\n".into(), "server.listen", "2:10", "not an IP address with a port"),
        ("[server]\nlisten = 8080\n".into(), "server.listen", "2:10", "expected a string, found integer"),
        ("[server]\ndatabase = \"sqlite::memory:\"\n".into(), "server.database", "2:12", "in-memory"),
        ("[server]\ndatabase = \"sqlite://:memory:\"\n".into(), "server.database", "2:12", "in-memory"),
        ("[server]\ndatabase = \"sqlite:herald.db\"\n".into(), "server.database", "2:12", "sqlite://herald.db"),
        ("[server]\ndatabase = \"sqlite://\"\n".into(), "server.database", "2:12", "names no file"),
        ("[server]\ndatabase = \"postgres://u:pw@db:port/herald\"\n".into(), "server.database", "2:12", "not a valid PostgreSQL URL"),
        ("[server]\nnode_id = \"herald a\"\n".into(), "server.node_id", "2:11", "without spaces"),
        ("[server]\nnode_id = \"\"\n".into(), "server.node_id", "2:11", "1 to 128"),
        ("[server]\ndatabase = \"mysql://db/herald\"\n".into(), "server.database", "2:12", "unsupported database URL"),
        ("[server]\nshutdown_grace = \"soon\"\n".into(), "server.shutdown_grace", "2:18", "not a duration"),
        ("[server]\nrequest_timeout = \"0s\"\n".into(), "server.request_timeout", "2:19", "longer than zero"),
        ("[server]\nmax_concurrent_requests = 0\n".into(), "server.max_concurrent_requests", "2:27", "at least 1"),
        ("[server]\nsubmit_queue = \"10\"\n".into(), "server.submit_queue", "2:16", "without quotes"),
        ("[retention]\ndelivered = 7\n".into(), "retention.delivered", "2:13", "a duration is a string"),
        ("[retention]\nfailed = \"a month\"\n".into(), "retention.failed", "2:10", "not a duration"),
        ("[retention]\ndelivred = \"7d\"\n".into(), "retention.delivred", "2:1", "did you mean `delivered`?"),
        ("retention = \"7d\"\n".into(), "retention", "1:13", "[retention] table"),
        // Destination names and shape.
        ("[destinations.Ops_Hook]\nkind = \"webhook\"\nurl = \"https://x.example\"\n".into(), "destinations.Ops_Hook", "1:15", "invalid name"),
        (long, &long_key, "1:15", "65 characters"),
        ("[destinations]\nhook = \"https://x.example\"\n".into(), "destinations.hook", "2:8", "expected a table [destinations.hook]"),
        ("destinations = [1]\n".into(), "destinations", "1:16", "one table per destination"),
        // kind.
        ("[destinations.hook]\nurl = \"https://x.example\"\n".into(), "destinations.hook.kind", "1:15", "missing `kind`"),
        ("[destinations.hook]\nkind = \"carrier-pigeon\"\n".into(), "destinations.hook.kind", "2:8", "unknown kind \"carrier-pigeon\"; known kinds: webhook"),
        ("[destinations.hook]\nkind = 3\n".into(), "destinations.hook.kind", "2:8", "expected a string"),
        // Webhook settings.
        ("[destinations.hook]\nkind = \"webhook\"\n".into(), "destinations.hook.url", "1:15", "missing `url`"),
        (base("urll = \"https://x.example\""), "destinations.hook.urll", "4:1", "unknown setting `urll`; did you mean `url`?"),
        (base("colour = \"red\""), "destinations.hook.colour", "4:1", "valid settings: kind, max_attempts"),
        (base("Max_Attempts = 3"), "destinations.hook.Max_Attempts", "4:1", "did you mean `max_attempts`?"),
        ("[destinations.hook]\nkind = \"webhook\"\nurl = \"ftp://x.example/a\"\n".into(), "destinations.hook.url", "3:7", "http:// or https://"),
        ("[destinations.hook]\nkind = \"webhook\"\nurl = \"hooks.example/herald\"\n".into(), "destinations.hook.url", "3:7", "not a valid URL"),
        (base("headers = { \"X-A\" = \"a\\nb\" }"), "destinations.hook.headers.X-A", "4:21", "line breaks"),
        (base("headers = { \"Webhook-Signature\" = \"v1,x\" }"), "destinations.hook.headers.Webhook-Signature", "4:13", "set by herald itself"),
        (base("headers = { \"X A\" = \"b\" }"), "destinations.hook.headers.X A", "4:13", "not a valid header name"),
        (base("headers = { \"X-A\" = 1 }"), "destinations.hook.headers.X-A", "4:21", "expected a string"),
        (base("headers = { \"X-A\" = \"1\", \"x-a\" = \"2\" }"), "destinations.hook.headers.x-a", "4:26", "given twice"),
        (base("headers = [\"X-A: 1\"]"), "destinations.hook.headers", "4:11", "expected a table of header names"),
        // Secrets.
        (base("secret = \"${MISSING_VAR}\""), "destinations.hook.secret", "4:10", "environment variable `MISSING_VAR` is not set"),
        (base("secret = \"${BLANK}\""), "destinations.hook.secret", "4:10", "`BLANK` is set but empty"),
        (base("secret = \"${BAD\""), "destinations.hook.secret", "4:10", "malformed environment reference"),
        (base("secret = \"file:/nonexistent/herald/secret\""), "destinations.hook.secret", "4:10", "cannot read secret file `/nonexistent/herald/secret`"),
        (base("secret = \"file:\""), "destinations.hook.secret", "4:10", "names no file"),
        (base("secret = \"${NOT_A_WHSEC}\""), "destinations.hook.secret", "4:10", "the value of environment variable `NOT_A_WHSEC` is not a Standard Webhooks signing secret"),
        (base("secret = \"whsec_\""), "destinations.hook.secret", "4:10", "the inline secret is not a Standard Webhooks signing secret"),
        // Policy.
        (base("backoff_base = \"1 sec\""), "destinations.hook.backoff_base", "4:16", "not a duration: \"1 sec\"; write e.g. \"250ms\", \"2s\", \"10m\" or \"24h\""),
        (base("backoff_base = \"1.5s\""), "destinations.hook.backoff_base", "4:16", "not a duration"),
        (base("backoff_base = \"20m\""), "destinations.hook.backoff_base", "4:16", "backoff_base (20m) is longer than backoff_max (10m)"),
        (base("backoff_max = \"500ms\""), "destinations.hook.backoff_max", "4:15", "backoff_base (1s) is longer than backoff_max (500ms)"),
        (base("timeout = 10"), "destinations.hook.timeout", "4:11", "a duration is a string with a unit"),
        (base("max_age = \"0s\""), "destinations.hook.max_age", "4:11", "must be longer than zero"),
        (base("max_age = \"-1h\""), "destinations.hook.max_age", "4:11", "not a duration"),
        (base("max_age = \"400d\""), "destinations.hook.max_age", "4:11", "longer than a year"),
        (base("circuit_cool_down = \"\""), "destinations.hook.circuit_cool_down", "4:21", "not a duration"),
        (base("max_attempts = 0"), "destinations.hook.max_attempts", "4:16", "must be at least 1, found 0"),
        (base("concurrency = -2"), "destinations.hook.concurrency", "4:15", "must be at least 1, found -2"),
        (base("max_attempts = 5000000000"), "destinations.hook.max_attempts", "4:16", "too large"),
        (base("max_attempts = \"8\""), "destinations.hook.max_attempts", "4:16", "write it without quotes: 8"),
        (base("circuit_failures = 2.5"), "destinations.hook.circuit_failures", "4:20", "expected a whole number, found float"),
        (base("circuit_failure_rate = 0"), "destinations.hook.circuit_failure_rate", "4:24", "must be more than 0 and at most 1, found 0; write a share of attempts between 0 and 1, e.g. 0.8 for 80 %"),
        (base("circuit_failure_rate = 80"), "destinations.hook.circuit_failure_rate", "4:24", "must be more than 0 and at most 1, found 80"),
        (base("circuit_failure_rate = 1.5"), "destinations.hook.circuit_failure_rate", "4:24", "must be more than 0 and at most 1, found 1.5"),
        (base("circuit_failure_rate = \"0.8\""), "destinations.hook.circuit_failure_rate", "4:24", "expected a number, found a string \"0.8\""),
        (base("circuit_failure_rate = nan"), "destinations.hook.circuit_failure_rate", "4:24", "must be more than 0 and at most 1, found NaN"),
        (base("rate_limit = \"ten per second\""), "destinations.hook.rate_limit", "4:14", "not a rate limit"),
        (base("rate_limit = \"0/s\""), "destinations.hook.rate_limit", "4:14", "must be at least 1"),
        (base("rate_limit = \"5/0ms\""), "destinations.hook.rate_limit", "4:14", "longer than zero"),
        (base("rate_limit = \"5/fortnight\""), "destinations.hook.rate_limit", "4:14", "not a rate limit"),
        (base("rate_limit = 10"), "destinations.hook.rate_limit", "4:14", "expected a string"),
        (base("on_unknown = \"retry\""), "destinations.hook.on_unknown", "4:14", "write \"resend\""),
        (base("dedupe = \"yes\""), "destinations.hook.dedupe", "4:10", "expected true or false, found string"),
        // Groups.
        (base("[groups]\np1 = [\"hook\", \"hok\"]"), "groups.p1", "5:15", "unknown destination `hok`; did you mean `hook`?"),
        (base("[groups]\np1 = [\"pagers\"]"), "groups.p1", "5:7", "unknown destination `pagers`; destinations: hook"),
        ("[groups]\np1 = [\"a\"]\n".into(), "groups.p1", "2:7", "no destinations are configured"),
        (base("[groups]\np1 = [\"hook\"]\np2 = [\"p1\"]"), "groups.p2", "6:7", "groups may not contain other groups"),
        (base("[groups]\nhook = [\"hook\"]"), "groups.hook", "5:1", "same name as a destination"),
        (base("[groups]\np1 = []"), "groups.p1", "5:6", "group `p1` is empty"),
        (base("[groups]\np1 = \"hook\""), "groups.p1", "5:6", "expected a list of destination names"),
        (base("[groups]\np1 = [1]"), "groups.p1", "5:7", "expected a string, found integer"),
        (base("[groups]\nP1 = [\"hook\"]"), "groups.P1", "5:1", "invalid name"),
        (base("groups = [\"hook\"]"), "destinations.hook.groups", "4:1", "unknown setting `groups`"),
    ];
    let mut failures = Vec::new();
    for (text, key, at, fragment) in &cases {
        let errors = problems(text);
        let location = format!("herald.toml:{at}");
        let found = errors
            .iter()
            .any(|e| e.key == *key && e.location == location && e.message.contains(fragment));
        if !found || errors.len() != 1 {
            failures.push(format!(
                "input:\n{text}\nwanted exactly one error {location} [{key}] ~ {fragment:?}\ngot:\n{}\n",
                super::ConfigErrors(errors)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_error_in_a_file_is_reported_in_order() {
    let text = r#"[server]
listen = "somewhere"
databse = "sqlite://herald.db"

[destinations.ops-webhook]
kind = "webhook"
urll = "https://hooks.example/herald"
backoff_base = "1 sec"
max_attempts = 0

[destinations.chat]
url = "https://chat.example"

[destinations.pager]
kind = "webhook"
url = "https://pager.example"
secret = "${PAGER_SECRET}"

[groups]
p1 = ["ops-webhook", "chat", "pager", "nobody"]
p2 = ["p1"]
"#;
    let errors = problems(text);
    let got: Vec<(&str, &str)> =
        errors.iter().map(|e| (e.location.as_str(), e.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("herald.toml:2:10", "server.listen"),
            ("herald.toml:3:1", "server.databse"),
            ("herald.toml:5:15", "destinations.ops-webhook.url"),
            ("herald.toml:7:1", "destinations.ops-webhook.urll"),
            ("herald.toml:8:16", "destinations.ops-webhook.backoff_base"),
            ("herald.toml:9:16", "destinations.ops-webhook.max_attempts"),
            ("herald.toml:11:15", "destinations.chat.kind"),
            ("herald.toml:17:10", "destinations.pager.secret"),
            ("herald.toml:20:39", "groups.p1"),
            ("herald.toml:21:7", "groups.p2"),
        ],
        "{}",
        super::ConfigErrors(errors.clone())
    );
    assert!(errors[3].message.contains("did you mean `url`?"));
    assert!(errors[7].message.contains("PAGER_SECRET"));
    assert!(errors[8].message.contains("unknown destination `nobody`"));
    // One line per error.
    let display = super::ConfigErrors(errors.clone()).to_string();
    assert_eq!(display.lines().count(), errors.len());
    assert_eq!(
        display.lines().nth(4),
        Some(
            "herald.toml:8:16: destinations.ops-webhook.backoff_base: not a duration: \"1 sec\"; \
             write e.g. \"250ms\", \"2s\", \"10m\" or \"24h\""
        )
    );
}

#[test]
fn several_syntax_errors_are_all_reported() {
    let text = "[server]\nlisten = 127.0.0.1:8080\n\n[destinations.x]\nkind = webhook\nurl = \"https://x.example\n";
    let errors = problems(text);
    let locations: Vec<&str> = errors.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(locations, vec!["herald.toml:2:15", "herald.toml:5:8", "herald.toml:6:25"]);
    assert!(errors.iter().all(|e| e.key.is_empty() && e.message.starts_with("invalid TOML")));
    assert_eq!(errors[0].to_string(), format!("herald.toml:2:15: {}", errors[0].message));
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = "# é€\n[destinations.hook]\nkind = \"webhook\"\nurl = \"https://x.example\"\nmax_age = \"ü\"\n";
    let errors = problems(text);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].location, "herald.toml:5:11");
}

#[test]
fn a_broken_destination_referenced_by_a_group_is_reported_once() {
    let errors = problems("[destinations.hook]\nkind = \"webhook\"\n[groups]\np1 = [\"hook\"]\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].key, "destinations.hook.url");
}

#[test]
fn secrets_resolve_from_env_file_and_inline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops-secret");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "whsec_c2VjcmV0LWZyb20tYS1maWxl").unwrap();
    drop(file);

    let text = format!(
        "[destinations.a]\nkind = \"webhook\"\nurl = \"https://a.example\"\nsecret = \"${{OPS_WEBHOOK_SECRET}}\"\n\
         [destinations.b]\nkind = \"webhook\"\nurl = \"https://b.example\"\nsecret = \"file:{}\"\n\
         [destinations.c]\nkind = \"webhook\"\nurl = \"https://c.example\"\nsecret = \"whsec_aW5saW5l\"\n\
         [destinations.d]\nkind = \"webhook\"\nurl = \"https://d.example\"\nsecret = \"file://{}\"\n",
        path.display(),
        path.display()
    );
    let config = parse(&text).unwrap();
    let secret = |name: &str| webhook_settings(config.destination(name).unwrap()).secret.clone();
    assert_eq!(secret("a").as_deref(), Some(OPS_SECRET));
    assert_eq!(secret("b").as_deref(), Some("whsec_c2VjcmV0LWZyb20tYS1maWxl"));
    assert_eq!(secret("c").as_deref(), Some("whsec_aW5saW5l"));
    assert_eq!(secret("d").as_deref(), Some("whsec_c2VjcmV0LWZyb20tYS1maWxl"));

    // Debug output of the configuration hides secrets, header values and URL paths.
    let with_header = parse(&format!(
        "{BASE}secret = \"${{OPS_WEBHOOK_SECRET}}\"\nheaders = {{ Authorization = \"Bearer tok-123\" }}\n"
    ))
    .unwrap();
    let debug = format!("{with_header:?}");
    assert!(
        !debug.contains(OPS_SECRET) && !debug.contains("tok-123") && !debug.contains("/herald"),
        "{debug}"
    );
    assert!(debug.contains("<redacted>") && debug.contains("Authorization"), "{debug}");
}

#[test]
fn error_messages_never_contain_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-secret");
    std::fs::write(&path, format!("{LEAKY}\n")).unwrap();
    let empty = dir.path().join("empty-secret");
    std::fs::write(&empty, "\n").unwrap();

    let cases = [
        (format!("secret = \"file:{}\"", path.display()), "the contents of"),
        (format!("secret = \"file:{}\"", empty.display()), "is empty"),
        ("secret = \"${NOT_A_WHSEC}\"".to_owned(), "NOT_A_WHSEC"),
        (format!("secret = \"{LEAKY}\""), "the inline secret"),
        (format!("secret = \"${{{LEAKY}\""), "malformed"),
        (format!("secret = \"whsec_{LEAKY}\""), "the inline secret"),
    ];
    for (line, fragment) in cases {
        let errors = problems(&format!("{BASE}{line}\n"));
        let display = super::ConfigErrors(errors.clone()).to_string();
        assert_eq!(errors.len(), 1, "{display}");
        assert!(display.contains(fragment), "{display}");
        assert!(!display.contains("hunter2"), "secret leaked: {display}");
        assert!(!format!("{errors:?}").contains("hunter2"), "secret leaked: {errors:?}");
    }
    // Database URLs may carry passwords; webhook URLs may carry tokens.
    let errors = problems("[server]\ndatabase = \"postgres://herald:pw-hunter2@db:x/herald\"\n");
    assert!(!errors[0].message.contains("hunter2"));
    let errors =
        problems("[destinations.x]\nkind = \"webhook\"\nurl = \"ftp://hunter2@x.example\"\n");
    assert!(!errors[0].message.contains("hunter2"));
}

#[test]
fn load_reads_the_file_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("herald.toml");
    let errors = Config::load(&missing).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].location, missing.display().to_string());
    assert!(errors[0].message.contains("not found"), "{}", errors[0]);

    std::fs::write(
        &missing,
        "[server]\nlisten = \"127.0.0.1:1\"\n[destinations.x]\nkind = \"mail\"\n",
    )
    .unwrap();
    let errors = Config::load(&missing).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].location, format!("{}:4:8", missing.display()));

    std::fs::write(&missing, "[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let config = Config::load(&missing).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:1".parse::<SocketAddr>().unwrap());
    assert!(Config::load(Path::new("/")).is_err());
}

fn targets_config() -> Config {
    Config {
        destinations: vec![
            webhook("a", "https://a.example"),
            webhook("b", "https://b.example"),
            webhook("c", "https://c.example"),
        ],
        groups: BTreeMap::from([
            ("p1".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
            ("p2".to_owned(), vec!["b".to_owned(), "c".to_owned(), "b".to_owned()]),
        ]),
        ..Config::default()
    }
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn resolve_targets_expands_groups_in_first_seen_order_without_repeats() {
    let config = targets_config();
    assert_eq!(
        config.resolve_targets(&names(&["c", "p1", "a", "p2"])).unwrap(),
        names(&["c", "a", "b"])
    );
    assert_eq!(config.resolve_targets(&names(&["p2"])).unwrap(), names(&["b", "c"]));
    assert_eq!(config.resolve_targets(&names(&["b", "b"])).unwrap(), names(&["b"]));
    assert_eq!(config.resolve_targets(&[]).unwrap(), Vec::<String>::new());
}

#[test]
fn resolve_targets_names_every_unknown_entry_and_lists_the_valid_ones() {
    let config = targets_config();
    let err = config.resolve_targets(&names(&["a", "nope", "p9", "nope", "p1"])).unwrap_err();
    assert_eq!(err.unknown, names(&["nope", "p9"]));
    assert_eq!(err.destinations, names(&["a", "b", "c"]));
    assert_eq!(err.groups, names(&["p1", "p2"]));
    assert_eq!(
        err.to_string(),
        "unknown destinations or groups `nope`, `p9`; destinations: a, b, c; groups: p1, p2"
    );
    let err = Config::default().resolve_targets(&names(&["x"])).unwrap_err();
    assert_eq!(err.to_string(), "unknown destination or group `x`; no destinations are configured");
}

#[test]
fn durations_and_rate_limits() {
    for (text, ms) in [
        ("250ms", 250),
        ("2s", 2000),
        ("10m", 600_000),
        ("24h", 86_400_000),
        ("1d", 86_400_000),
        ("1h30m", 5_400_000),
        ("0s", 0),
    ] {
        assert_eq!(parse_duration(text), Some(Duration::from_millis(ms)), "{text}");
    }
    for text in ["", "1", "s", "1 s", "1.5s", "-1s", "1sec", "1us", "1S", "99999999999999999999d"] {
        assert_eq!(parse_duration(text), None, "{text}");
    }
    for (ms, text) in
        [(0, "0s"), (1500, "1500ms"), (2000, "2s"), (600_000, "10m"), (86_400_000, "24h")]
    {
        assert_eq!(format_duration(Duration::from_millis(ms)), text);
    }
    for (text, count, per_ms) in [
        ("10/s", 10, 1000),
        ("100/m", 100, 60_000),
        ("1000/h", 1000, 3_600_000),
        ("5/250ms", 5, 250),
        ("3/2s", 3, 2000),
    ] {
        let limit = parse_rate_limit(text).unwrap();
        assert_eq!(
            (limit.count.get(), limit.per),
            (count, Duration::from_millis(per_ms)),
            "{text}"
        );
    }
    for text in ["10", "/s", "x/s", "10/", "10/x", "-1/s", "10/s/s", "99999999999/s"] {
        assert!(parse_rate_limit(text).is_err(), "{text}");
    }
}

/// A combination that cannot do what it says is valid but warned about, naming the
/// destination and what to change; the sane defaults and the sane pairs are quiet.
#[test]
fn warnings_name_combinations_that_cannot_work() {
    let warnings = |extra: &str| parse(&format!("{BASE}{extra}\n")).unwrap().warnings();
    assert_eq!(warnings(""), Vec::<String>::new());
    assert_eq!(warnings("dedupe = false\non_unknown = \"hold\""), Vec::<String>::new());
    let resend = warnings("dedupe = false");
    assert_eq!(resend.len(), 1, "{resend:?}");
    assert!(
        resend[0].starts_with("destinations.hook: dedupe = false with on_unknown = \"resend\"")
    );
    assert!(resend[0].contains("set on_unknown = \"hold\""), "{resend:?}");
    let hold = warnings("on_unknown = \"hold\"");
    assert_eq!(hold.len(), 1, "{hold:?}");
    assert!(hold[0].contains("only applies to an ambiguous last attempt"), "{hold:?}");
    let single = warnings("dedupe = false\non_unknown = \"hold\"\nmax_attempts = 1");
    assert_eq!(single.len(), 1, "{single:?}");
    assert!(single[0].contains("max_attempts = 1"), "{single:?}");
}

/// A kind that can neither deduplicate nor be searched is warned about by its kind, not
/// by a `dedupe = false` the operator never wrote; one with a look-up is not.
#[test]
fn kinds_that_cannot_settle_a_timeout_are_warned_about_by_name() {
    let hook = "[destinations.chat]\nkind = \"slack-webhook\"\nurl = \"${SLACK_HOOK}\"\n";
    let warnings = parse(hook).unwrap().warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("destinations.chat: a slack-webhook destination can neither"),
        "{warnings:?}"
    );
    let held = parse(&format!("{hook}on_unknown = \"hold\"\n")).unwrap().warnings();
    assert_eq!(held, Vec::<String>::new());
    let slack =
        "[destinations.chat]\nkind = \"slack\"\ntoken = \"${SLACK_TOKEN}\"\nchannel = \"C1\"\n";
    assert_eq!(parse(slack).unwrap().warnings(), Vec::<String>::new(), "slack can look up");
}

/// A secret written in the file itself is valid but warned about, located, with the
/// way out; one from `${ENV}` or `file:` is quiet. The warning never quotes the secret.
#[test]
fn secrets_written_inline_are_warned_about_where_they_are() {
    let text = "[server]\ndatabase = \"postgres://herald:pg-inline-pass@db.internal/herald\"\n\
                [destinations.chat]\nkind = \"slack\"\ntoken = \"xoxb-inline-token-1\"\n\
                channel = \"C1\"\n\
                [destinations.hook]\nkind = \"webhook\"\nurl = \"https://u:url-pass-123@h.example/\"\n\
                headers = { Authorization = \"Bearer inline-bearer-1\", X-Team = \"sre\" }\n";
    let warnings = parse(text).unwrap().warnings();
    let inline: Vec<&String> = warnings.iter().filter(|w| w.contains("written inline")).collect();
    let located: Vec<&str> =
        inline.iter().map(|w| w.split(": ").next().unwrap_or_default()).collect();
    assert_eq!(
        located,
        ["herald.toml:2:12", "herald.toml:5:9", "herald.toml:9:7", "herald.toml:10:29"],
        "{warnings:#?}"
    );
    for (warning, key) in inline.iter().zip([
        "server.database",
        "destinations.chat.token",
        "destinations.hook.url",
        "destinations.hook.headers.Authorization",
    ]) {
        assert!(warning.contains(key) && warning.contains("${ENV_VAR}"), "{warning}");
        for secret in ["pg-inline-pass", "xoxb-inline", "url-pass", "inline-bearer"] {
            assert!(!warning.contains(secret), "{warning}");
        }
    }

    let quiet = "[server]\ndatabase = \"${DATABASE_URL}\"\n\
                 [destinations.chat]\nkind = \"slack\"\ntoken = \"${SLACK_TOKEN}\"\nchannel = \"C1\"\n\
                 [destinations.hook]\nkind = \"webhook\"\nurl = \"https://h.example/\"\n\
                 secret = \"${OPS_WEBHOOK_SECRET}\"\n";
    let config = parse(quiet).unwrap();
    assert_eq!(config.warnings(), Vec::<String>::new());
    assert_eq!(
        config.server.database,
        Database::Postgres { url: "postgres://herald:pg-pass-from-env@db.internal/herald".into() }
    );
}

/// Every secret the file resolves, wherever it came from, is in the redactor the
/// process scrubs its output with; ordinary settings are not.
#[test]
fn the_redactor_holds_every_resolved_secret() {
    let text = "[server]\ndatabase = \"${DATABASE_URL}\"\n\
                [destinations.chat]\nkind = \"slack-webhook\"\nurl = \"${SLACK_HOOK}\"\n\
                [destinations.hook]\nkind = \"webhook\"\nurl = \"https://h.example/herald\"\n\
                secret = \"${OPS_WEBHOOK_SECRET}\"\n\
                headers = { X-Api-Key = \"key-0123456789\", X-Team = \"platform-sre-team\" }\n";
    let redactor = parse(text).unwrap().redactor;
    let said = format!(
        "pg-pass-from-env {OPS_SECRET} key-0123456789 https://hooks.slack.com/services/T0/B0/X \
         platform-sre-team https://h.example/herald"
    );
    assert_eq!(
        redactor.redact(&said),
        "[redacted] [redacted] [redacted] [redacted] platform-sre-team https://h.example/herald"
    );
}

/// `server.database` may come from the environment or a file like any secret; a
/// reference that cannot be resolved is an error naming it, never its value.
#[test]
fn the_database_url_may_be_a_secret_reference() {
    let errors = problems("[server]\ndatabase = \"${NO_SUCH_VAR}\"\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].key, "server.database");
    assert!(errors[0].message.contains("`NO_SUCH_VAR` is not set"), "{errors:?}");
    let errors = problems("[server]\ndatabase = \"${NOT_A_WHSEC}\"\n");
    assert!(errors[0].message.contains("NOT_A_WHSEC") && !errors[0].message.contains("hunter2"));
}

#[test]
fn outbound_allow_networks_are_read_and_bad_entries_located() {
    assert_eq!(parse("").unwrap().outbound, Outbound::default());
    let config =
        parse("[outbound]\nallow_networks = [\"10.20.0.0/16\", \"127.0.0.1\", \"fd00::/8\"]\n")
            .unwrap();
    let expected = ["10.20.0.0/16", "127.0.0.1/32", "fd00::/8"].map(|n| parse_network(n).unwrap());
    assert_eq!(config.outbound, Outbound::allowing(expected));
    assert!(config.outbound.check("10.20.1.1".parse().unwrap()).is_ok());
    assert!(config.outbound.check("10.21.1.1".parse().unwrap()).is_err());

    let errors = problems(
        "[outbound]\nallow_networks = [\"10.0.0.0/8\", \"10.0.0.0/40\", 7]\nallow_network = []\n",
    );
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 3, "{shown:#?}");
    assert!(
        shown[0].starts_with(
            "herald.toml:2:33: outbound.allow_networks: \"10.0.0.0/40\" is not a network; write"
        ),
        "{shown:#?}"
    );
    assert_eq!(
        shown[1],
        "herald.toml:2:48: outbound.allow_networks: expected a string, found integer"
    );
    assert_eq!(
        shown[2],
        "herald.toml:3:1: outbound.allow_network: unknown setting `allow_network`; did you mean \
         `allow_networks`?"
    );
    let errors = problems("[outbound]\nallow_networks = \"10.0.0.0/8\"\n");
    assert!(errors[0].message.starts_with("expected a list of networks"), "{errors:?}");
    let errors = problems("[outbond]\n");
    assert!(errors[0].message.contains("did you mean [outbound]?"), "{errors:?}");
}

#[test]
fn server_limits_and_retention_are_read_with_documented_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config.server.max_concurrent_requests, 1024);
    assert_eq!(config.server.request_timeout, Duration::from_secs(10));
    assert_eq!(config.server.store_timeout, Duration::from_secs(5));
    assert_eq!(config.server.submit_queue, 1024);
    assert_eq!(config.retention.delivered, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(config.retention.failed, Duration::from_secs(30 * 24 * 3600));

    let text = "[server]\nmax_concurrent_requests = 64\nrequest_timeout = \"3s\"\n\
                store_timeout = \"1500ms\"\nsubmit_queue = 200\n\n\
                [retention]\ndelivered = \"1d\"\nfailed = \"90d\"\n";
    let config = parse(text).unwrap();
    assert_eq!(config.server.max_concurrent_requests, 64);
    assert_eq!(config.server.request_timeout, Duration::from_secs(3));
    assert_eq!(config.server.store_timeout, Duration::from_millis(1500));
    assert_eq!(config.server.submit_queue, 200);
    assert_eq!(
        config.retention,
        RetentionConfig {
            delivered: Duration::from_secs(24 * 3600),
            failed: Duration::from_secs(90 * 24 * 3600),
        }
    );
}

/// A kind of the tests' own, to show what the reader does for every kind: its
/// defaults, its problems' locations, its unknown keys.
#[derive(Debug, PartialEq)]
struct Paging {
    token: String,
    routes: Vec<(String, String)>,
    escalate_after: Option<Duration>,
}

impl KindSettings for Paging {
    fn kind(&self) -> &'static str {
        "paging"
    }
    fn build(&self, _: http::Client) -> Result<std::sync::Arc<dyn Connector>, ConnectorError> {
        Err(ConnectorError::InvalidSetting("a test kind has no connector".into()))
    }
    fn servers(&self) -> Vec<Server> {
        Vec::new()
    }
    fn capabilities(&self) -> Capabilities {
        PAGING.capabilities
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn parse_paging(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let token = table.required_secret("token", "e.g. token = \"${PAGER_TOKEN}\"");
    let routes = table.string_table("routing", "a table of services to routes").unwrap_or_default();
    let escalate_after = table.duration("escalate_after");
    if !table.ok() {
        return None;
    }
    let routes = routes.into_iter().filter_map(|e| Some((e.key, e.value?))).collect();
    Some(ConnectorConfig::new(Paging { token: token?, routes, escalate_after }))
}

static PAGING: Kind = Kind {
    name: "paging",
    keys: &["token", "routing", "escalate_after"],
    parse: parse_paging,
    defaults: Defaults {
        rate_limit: Some(RateLimit {
            count: NonZeroU32::new(2).unwrap(),
            per: Duration::from_secs(1),
        }),
        concurrency: Some(1),
    },
    capabilities: Capabilities {
        dedupe_by_key: false,
        lookup: true,
        edit: false,
        thread_reply: true,
    },
};

static TEST_KINDS: &[&Kind] = &[&webhook::KIND, &PAGING];

fn parse_with_paging(text: &str) -> Result<Config, Vec<ConfigError>> {
    Config::parse_with(text, "herald.toml", &env, TEST_KINDS).map_err(|e| e.0)
}

#[test]
fn a_kind_reads_its_own_keys_and_its_defaults_apply_where_the_operator_set_none() {
    let text = "[destinations.pager]\nkind = \"paging\"\ntoken = \"${OPS_WEBHOOK_SECRET}\"\n\
                escalate_after = \"5m\"\nrouting = { checkout = \"team-a\" }\n\
                [destinations.tuned]\nkind = \"paging\"\ntoken = \"${SLACK_TOKEN}\"\n\
                rate_limit = \"10/s\"\nconcurrency = 3\n\
                [destinations.half]\nkind = \"paging\"\ntoken = \"${SLACK_TOKEN}\"\nconcurrency = 8\n\
                [destinations.hook]\nkind = \"webhook\"\nurl = \"https://x.example\"\n";
    let config = parse_with_paging(text).unwrap();
    let pager = config.destination("pager").unwrap();
    assert_eq!(pager.kind(), "paging");
    assert_eq!(
        pager.connector.downcast_ref::<Paging>(),
        Some(&Paging {
            token: OPS_SECRET.into(),
            routes: vec![("checkout".into(), "team-a".into())],
            escalate_after: Some(Duration::from_secs(300)),
        })
    );
    assert!(pager.connector.downcast_ref::<WebhookConfig>().is_none());
    let limit = |count: u32, per_ms: u64| {
        Some(RateLimit {
            count: NonZeroU32::new(count).unwrap(),
            per: Duration::from_millis(per_ms),
        })
    };
    let lane = |name: &str| {
        let settings = &config.destination(name).unwrap().settings;
        (settings.rate_limit, settings.concurrency)
    };
    // The kind's defaults where nothing was set, the operator's values where they were.
    assert_eq!(lane("pager"), (limit(2, 1000), 1));
    assert_eq!(lane("tuned"), (limit(10, 1000), 3));
    assert_eq!(lane("half"), (limit(2, 1000), 8));
    // The webhook has no defaults of its own: herald's general ones.
    let general = LaneSettings::default();
    assert_eq!(lane("hook"), (general.rate_limit, general.concurrency));
    // Capabilities come from the kind, before any connector is built.
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert!(pager.connector.build(http::client()).is_err());
}

#[test]
fn a_kind_problem_points_at_the_nested_key_and_unknown_kind_keys_get_did_you_mean() {
    let text = "# pager\n\
                [destinations.pager]\n\
                kind = \"paging\"\n\
                token = \"${OPS_WEBHOOK_SECRET}\"\n\
                escalate_afer = \"5m\"\n\
                \n\
                [destinations.pager.routing]\n\
                checkout = \"team-a\"\n\
                search =   5\n\
                [destinations.empty]\n\
                kind = \"paging\"\n\
                escalate_after = \"never\"\n\
                timeuot = \"1s\"\n";
    let errors = parse_with_paging(text).unwrap_err();
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        vec![
            "herald.toml:5:1: destinations.pager.escalate_afer: unknown setting `escalate_afer`; \
             did you mean `escalate_after`?",
            "herald.toml:9:12: destinations.pager.routing.search: expected a string, found integer",
            "herald.toml:10:15: destinations.empty.token: missing `token`; add e.g. token = \
             \"${PAGER_TOKEN}\"",
            "herald.toml:12:18: destinations.empty.escalate_after: not a duration: \"never\"; \
             write e.g. \"250ms\", \"2s\", \"10m\" or \"24h\"",
            "herald.toml:13:1: destinations.empty.timeuot: unknown setting `timeuot`; did you \
             mean `timeout`?",
        ],
    );
    // A kind's key is known at the top level too, and in a table without `kind`.
    let errors =
        parse_with_paging("escalate_after = \"1m\"\n[destinations.x]\nroutng = 1\n").unwrap_err();
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(got[0].contains("it belongs in a [destinations.NAME] table"), "{got:?}");
    assert!(got[1].contains("missing `kind`") && got[1].contains("known kinds: webhook, paging"));
    assert!(
        got[2].starts_with("herald.toml:3:1: destinations.x.routng: unknown setting"),
        "{got:?}"
    );
}

/// The issue's configuration contract for the chat and ticket kinds, key for key: each
/// parses into its kind's settings, with the kind's default pace where none is set and
/// the operator's where one is.
#[test]
fn chat_and_ticket_kinds_parse_with_their_defaults() {
    use herald_connectors::jira::JiraConfig;
    use herald_connectors::slack::{SlackConfig, UpdateMode};
    use herald_connectors::slack_webhook::SlackWebhookConfig;

    let text = r#"
[destinations.ops-slack]
kind = "slack"
token = "${SLACK_BOT_TOKEN}"
channel = "C0123456789"
update_mode = "edit"
base_url = "http://127.0.0.1:9/slack/ws/api"
history_rate_limit = "1/m"

[destinations.ops-slack-hook]
kind = "slack-webhook"
url = "https://hooks.slack.com/services/T000/B000/XXXX"
rate_limit = "5/s"

[destinations.ops-jira]
kind = "jira"
url = "https://example.atlassian.net"
email = "herald@example.com"
token = "${JIRA_API_TOKEN}"
project = "OPS"
issue_type = "Incident"
transition_on_resolve = "Done"
lookup_grace = "90s"
"#;
    let env = |name: &str| match name {
        "SLACK_BOT_TOKEN" => Some("xoxb-1-2-3".to_owned()),
        "JIRA_API_TOKEN" => Some("jira-token".to_owned()),
        _ => None,
    };
    let config = Config::parse(text, "herald.toml", &env).unwrap();
    let by_name = |name: &str| config.destinations.iter().find(|d| d.name == name).unwrap();
    let one_per_second = RateLimit { count: NonZeroU32::MIN, per: Duration::from_secs(1) };

    let slack = by_name("ops-slack");
    assert_eq!(slack.connector.kind(), "slack");
    let settings = slack.connector.downcast_ref::<SlackConfig>().unwrap();
    assert_eq!(
        settings,
        &SlackConfig::new("xoxb-1-2-3", "C0123456789")
            .with_update_mode(UpdateMode::Edit)
            .with_base_url("http://127.0.0.1:9/slack/ws/api")
            .with_history_rate_limit(RateLimit {
                count: NonZeroU32::MIN,
                per: Duration::from_secs(60)
            })
    );
    assert_eq!(slack.settings.rate_limit, Some(one_per_second), "Slack's 1 message/s");
    assert!(!format!("{:?}", slack.connector).contains("xoxb-1-2-3"), "the token leaked");

    let hook = by_name("ops-slack-hook");
    let settings = hook.connector.downcast_ref::<SlackWebhookConfig>().unwrap();
    assert_eq!(settings.url, "https://hooks.slack.com/services/T000/B000/XXXX");
    let five = RateLimit { count: NonZeroU32::new(5).unwrap(), per: Duration::from_secs(1) };
    assert_eq!(hook.settings.rate_limit, Some(five), "the operator's pace wins");
    assert!(!format!("{:?}", hook.connector).contains("XXXX"), "the webhook URL leaked");

    let jira = by_name("ops-jira");
    let settings = jira.connector.downcast_ref::<JiraConfig>().unwrap();
    assert_eq!((settings.project.as_str(), settings.issue_type.as_str()), ("OPS", "Incident"));
    assert_eq!(settings.transition_on_resolve.as_deref(), Some("Done"));
    assert_eq!(settings.lookup_grace, Duration::from_secs(90));
    assert_eq!(settings.token, "jira-token");
    assert!(jira.settings.rate_limit.is_some(), "Jira has a default pace");
    assert!(!jira.connector.capabilities().dedupe_by_key && jira.connector.capabilities().lookup);
}

/// Each chat and ticket kind's own mistakes are reported at the key, in words.
#[test]
fn chat_and_ticket_kinds_report_their_mistakes_at_the_key() {
    let text = "\
[destinations.a]
kind = \"slack\"
token = \"xoxb-1\"
channel = \"#ops\"
update_mode = \"replace\"

[destinations.b]
kind = \"jira\"
url = \"https://example.atlassian.net\"
email = \"herald@example.com\"
token = \"t\"
issue_type = \"Incident\"
lookup_grace = \"soon\"

[destinations.c]
kind = \"slack-webhook\"
url = \"ftp://hooks.slack.com/services/T000/B000/XXXX\"
chanel = \"C1\"
";
    let errors = problems(text);
    let got: Vec<(String, String)> =
        errors.iter().map(|e| (e.location.clone(), e.key.clone())).collect();
    let want = [
        ("herald.toml:4:11", "destinations.a.channel"),
        ("herald.toml:5:15", "destinations.a.update_mode"),
        ("herald.toml:7:15", "destinations.b.project"),
        ("herald.toml:13:16", "destinations.b.lookup_grace"),
        ("herald.toml:17:7", "destinations.c.url"),
        ("herald.toml:18:1", "destinations.c.chanel"),
    ];
    let want: Vec<(String, String)> =
        want.iter().map(|(l, k)| ((*l).to_owned(), (*k).to_owned())).collect();
    assert_eq!(got, want, "{errors:#?}");
    assert!(errors[0].message.contains("channel id"), "{}", errors[0].message);
    assert!(errors[1].message.contains("thread"), "{}", errors[1].message);
    assert!(errors[2].message.contains("project"), "{}", errors[2].message);
    assert!(errors.iter().all(|e| !e.message.contains("XXXX")), "the webhook URL leaked");
}

#[test]
fn an_email_destination_parses_and_clear_text_is_refused_off_loopback() {
    use herald_connectors::email::{EmailConfig, Tls};

    let text = r#"
[destinations.stakeholders]
kind = "email"
smtp = "smtp://mail.example.com:587"
tls = "required"
username = "herald"
password = "${NOT_A_WHSEC}"
from = "herald <herald@example.com>"
to = ["oncall@example.com", "cto@example.com"]
"#;
    let config = parse(text).unwrap();
    let mail = &config.destinations[0];
    assert_eq!(mail.connector.kind(), "email");
    let settings = mail.connector.downcast_ref::<EmailConfig>().unwrap();
    assert_eq!(
        (settings.host.as_str(), settings.port, settings.tls),
        ("mail.example.com", 587, Tls::Required)
    );
    assert_eq!(settings.to.len(), 2);
    assert!(mail.connector.capabilities().thread_reply);
    assert!(!format!("{:?}", mail.connector).contains(LEAKY), "the password leaked");

    let clear = text.replace("tls = \"required\"", "tls = \"none\"");
    let errors = problems(&clear);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].location.as_str(), errors[0].key.as_str()),
        ("herald.toml:5:7", "destinations.stakeholders.tls")
    );
    assert!(
        errors[0].message.contains("only allowed for a server on this machine"),
        "{}",
        errors[0].message
    );
    assert!(!errors[0].message.contains(LEAKY));
    let typo = text.replace("to = [", "too = [");
    let errors = problems(&typo);
    assert!(errors.iter().any(|e| e.message.contains("missing `to`")), "{errors:?}");
}

/// A `matrix` destination: password or access token (secrets), the default device and
/// update mode, an alias for the room; mistakes reported at their key.
#[test]
fn matrix_destinations_parse_with_defaults_and_report_mistakes() {
    use herald_connectors::matrix::{Auth, MatrixConfig, UpdateMode};

    let text = r##"
[destinations.ops-matrix]
kind = "matrix"
homeserver = "https://matrix.example.org/"
user = "@herald:example.org"
password = "${MATRIX_PASSWORD}"
room = "#ops:example.org"

[destinations.ops-matrix-token]
kind = "matrix"
homeserver = "https://matrix.example.org"
access_token = "syt_token"
device_id = "HERALD2"
room = "!abcdef:example.org"
update_mode = "edit"
"##;
    let env = |name: &str| (name == "MATRIX_PASSWORD").then(|| "hunter2".to_owned());
    let config = Config::parse(text, "herald.toml", &env).unwrap();
    let by_name = |name: &str| config.destinations.iter().find(|d| d.name == name).unwrap();
    let matrix = by_name("ops-matrix");
    assert_eq!(
        matrix.connector.downcast_ref::<MatrixConfig>().unwrap(),
        &MatrixConfig::new(
            "https://matrix.example.org",
            "@herald:example.org",
            Auth::Password("hunter2".to_owned()),
            "#ops:example.org"
        )
    );
    assert!(!format!("{:?}", matrix.connector).contains("hunter2"), "the password leaked");
    assert!(matrix.connector.capabilities().dedupe_by_key);
    let token = by_name("ops-matrix-token");
    let settings = token.connector.downcast_ref::<MatrixConfig>().unwrap();
    assert_eq!(settings.auth, Auth::Token("syt_token".to_owned()));
    assert_eq!((settings.device_id.as_str(), settings.update_mode), ("HERALD2", UpdateMode::Edit));
    assert!(!format!("{:?}", token.connector).contains("syt_token"), "the token leaked");

    let text = "\
[destinations.a]
kind = \"matrix\"
homeserver = \"https://matrix.example.org\"
user = \"herald\"
password = \"pw\"
room = \"ops\"

[destinations.b]
kind = \"matrix\"
homeserver = \"https://matrix.example.org\"
password = \"pw\"
access_token = \"t\"
room = \"!r:example.org\"

[destinations.c]
kind = \"matrix\"
homeserver = \"https://matrix.example.org\"
room = \"!r:example.org\"
update_mode = \"replace\"
";
    let got: Vec<String> = problems(text).iter().map(|e| e.key.clone()).collect();
    for key in [
        "destinations.a.user",
        "destinations.a.room",
        "destinations.b.access_token",
        "destinations.c.password",
        "destinations.c.update_mode",
    ] {
        assert!(got.iter().any(|k| k == key), "{key} not reported: {got:?}");
    }
}

#[test]
fn listener_limits_are_read_with_documented_defaults_and_checked() {
    let config = parse("").unwrap();
    assert_eq!(config.server.max_body_bytes, 256 * 1024);
    assert_eq!(config.server.max_header_bytes, 16 * 1024);
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(config.server.max_connections, 4096);
    assert!(config.server.tls.is_none());

    let text = "[server]\nmax_body_bytes = 1048576\nmax_header_bytes = 8192\n\
                header_read_timeout = \"2s\"\nmax_connections = 100\n";
    let config = parse(text).unwrap();
    assert_eq!(config.server.max_body_bytes, 1024 * 1024);
    assert_eq!(config.server.max_header_bytes, 8192);
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(2));
    assert_eq!(config.server.max_connections, 100);

    #[rustfmt::skip]
    let cases = [
        ("[server]\nmax_header_bytes = 512\n", "server.max_header_bytes", "2:20", "must be from 1024 to 262144 bytes, found 512"),
        ("[server]\nmax_header_bytes = 1000000\n", "server.max_header_bytes", "2:20", "found 1000000"),
        ("[server]\nmax_connections = 0\n", "server.max_connections", "2:19", "must be at least 1"),
        ("[server]\nmax_body_bytes = \"1MB\"\n", "server.max_body_bytes", "2:18", "expected a whole number"),
        ("[server]\nheader_read_timeout = \"0s\"\n", "server.header_read_timeout", "2:23", ""),
        ("[server]\nheader_read_timeout = 10\n", "server.header_read_timeout", "2:23", "a duration is a string with a unit"),
        ("[server]\nmax_conections = 10\n", "server.max_conections", "2:1", "did you mean `max_connections`?"),
    ];
    for (text, key, at, fragment) in cases {
        let errors = problems(text);
        assert_eq!(errors.len(), 1, "{text}: {errors:?}");
        assert_eq!(
            (errors[0].key.as_str(), errors[0].location.as_str()),
            (key, &*format!("herald.toml:{at}"))
        );
        assert!(errors[0].message.contains(fragment), "{text}: {}", errors[0].message);
    }
}

/// TLS settings come in pairs, and what they refer to is read while parsing: every
/// problem points at the setting's value and names the file. (A key that does not match
/// its certificate, and working pairs, need real certificates: the integration test
/// `listener` makes them with a throwaway CA.)
#[test]
fn tls_settings_come_in_pairs_and_each_bad_file_is_reported_at_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let no_pem = dir.path().join("notes.txt");
    std::fs::write(&no_pem, "this is not a certificate\n").unwrap();
    let key_shaped = dir.path().join("key.pem");
    std::fs::write(
        &key_shaped,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.crt");
    let (garbage, no_pem, key_shaped, missing) =
        (garbage.display(), no_pem.display(), key_shaped.display(), missing.display());

    #[rustfmt::skip]
    let cases = [
        (format!("[server]\ntls_cert = \"file:{garbage}\"\n"), "server.tls_cert", "2:1", "tls_cert is set without tls_key".to_owned()),
        (format!("[server]\nlisten = \"0.0.0.0:8443\"\ntls_key = \"file:{garbage}\"\n"), "server.tls_key", "3:1", "tls_key is set without tls_cert".to_owned()),
        (format!("[server]\ntls_cert = \"file:{missing}\"\ntls_key = \"file:{no_pem}\"\n"), "server.tls_cert", "2:12", format!("cannot read secret file `{missing}`")),
        (format!("[server]\ntls_cert = \"file:{garbage}\"\ntls_key = \"file:{no_pem}\"\n"), "server.tls_cert", "2:12", format!("the contents of `{garbage}` is not readable as PEM (a section's base64 content is damaged)")),
        (format!("[server]\ntls_cert = \"file:{no_pem}\"\ntls_key = \"file:{no_pem}\"\n"), "server.tls_cert", "2:12", format!("the contents of `{no_pem}` holds no certificate")),
        (format!("[server]\ntls_cert = \"/etc/herald/tls.crt\"\ntls_key = \"file:{no_pem}\"\n"), "server.tls_cert", "2:12", "to read the file, write \"file:/etc/herald/tls.crt\"".to_owned()),
        (format!("[server]\ntls_cert = \"${{NO_SUCH_VAR}}\"\ntls_key = \"file:{no_pem}\"\n"), "server.tls_cert", "2:12", "environment variable `NO_SUCH_VAR` is not set".to_owned()),
        (format!("[server]\ntls_cert = 1\ntls_key = \"file:{no_pem}\"\n"), "server.tls_cert", "2:12", "expected a string, found integer".to_owned()),
    ];
    for (text, key, at, fragment) in &cases {
        let errors = problems(text);
        let location = format!("herald.toml:{at}");
        assert!(
            errors.iter().any(|e| e.key == *key
                && e.location == location
                && e.message.contains(fragment.as_str())),
            "input:\n{text}\nwanted {location} [{key}] ~ {fragment:?}\ngot:\n{}",
            super::ConfigErrors(errors.clone())
        );
    }

    // With a certificate problem the key is still checked on its own, and an encrypted
    // key is named as such.
    let text = format!("[server]\ntls_cert = \"file:{no_pem}\"\ntls_key = \"file:{key_shaped}\"\n");
    let errors = problems(&text);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        (errors[1].key.as_str(), errors[1].location.as_str()),
        ("server.tls_key", "herald.toml:3:11")
    );
    assert!(errors[1].message.contains("holds an encrypted private key"), "{}", errors[1].message);
}

#[test]
fn telemetry_is_off_by_default_and_read_with_its_defaults() {
    assert_eq!(parse("").unwrap().telemetry, None);
    let cases = [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
        ("https://otel.example/otlp", "https://otel.example/otlp/v1/traces"),
        ("https://otel.example/otlp/", "https://otel.example/otlp/v1/traces"),
        ("https://otel.example:4318/v1/traces", "https://otel.example:4318/v1/traces"),
        ("http://[::1]:4318/v1/traces?tenant=a", "http://[::1]:4318/v1/traces?tenant=a"),
    ];
    for (endpoint, url) in cases {
        let config = parse(&format!("[telemetry]\notlp_endpoint = \"{endpoint}\"\n")).unwrap();
        let telemetry = config.telemetry.unwrap();
        assert_eq!(telemetry.traces_url, url, "{endpoint}");
        assert_eq!(telemetry.service_name, "herald");
        assert_eq!(telemetry.headers, Vec::<(String, String)>::new());
        assert_eq!(telemetry.sample_ratio, 1.0);
    }
}

#[test]
fn telemetry_headers_are_secrets_like_a_webhooks() {
    let config = parse(
        "[telemetry]\notlp_endpoint = \"https://otel.example\"\nservice_name = \"herald-eu\"\n\
         sample_ratio = 0.25\nheaders = { Authorization = \"${OPS_WEBHOOK_SECRET}\", \
         X-Scope-OrgID = \"tenant-1\", X-Api-Key = \"inline-collector-key\" }\n",
    )
    .unwrap();
    let telemetry = config.telemetry.clone().unwrap();
    assert_eq!(telemetry.service_name, "herald-eu");
    assert_eq!(telemetry.sample_ratio, 0.25);
    assert_eq!(
        telemetry.headers,
        vec![
            ("Authorization".to_owned(), OPS_SECRET.to_owned()),
            ("X-Scope-OrgID".to_owned(), "tenant-1".to_owned()),
            ("X-Api-Key".to_owned(), "inline-collector-key".to_owned()),
        ]
    );
    // The credentials are redacted everywhere; a plain header is not a secret.
    assert_eq!(config.redactor.redact(OPS_SECRET), "[redacted]");
    assert_eq!(config.redactor.redact("inline-collector-key"), "[redacted]");
    assert_eq!(config.redactor.redact("tenant-1"), "tenant-1");
    // Debug shows header names only.
    let shown = format!("{telemetry:?}");
    assert!(!shown.contains(OPS_SECRET) && !shown.contains("inline-collector-key"), "{shown}");
    // The inline credential is warned about, located.
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].starts_with("herald.toml:5:94: "), "{warnings:#?}");
    assert!(warnings[0].contains("telemetry.headers.X-Api-Key holds a secret"), "{warnings:#?}");
}

#[test]
fn bad_telemetry_settings_are_located_with_advice() {
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("[telemetry]\n", "telemetry.otlp_endpoint", "1:2", "missing `otlp_endpoint`; add otlp_endpoint = \"http://127.0.0.1:4318\""),
        ("[telemetry]\notlp_endpoint = 4318\n", "telemetry.otlp_endpoint", "2:17", "expected a string, found integer"),
        ("[telemetry]\notlp_endpoint = \"127.0.0.1:4318\"\n", "telemetry.otlp_endpoint", "2:17", "must start with http:// or https://"),
        ("[telemetry]\notlp_endpoint = \"grpc://collector:4317\"\n", "telemetry.otlp_endpoint", "2:17", "gRPC is not supported"),
        ("[telemetry]\notlp_endpoint = \"http://exa mple\"\n", "telemetry.otlp_endpoint", "2:17", "not a valid URL"),
        ("[telemetry]\notlp_endpoint = \"https://u:hunter2-do-not-print@otel.example\"\n", "telemetry.otlp_endpoint", "2:17", "give them as a header"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example/#x\"\n", "telemetry.otlp_endpoint", "2:17", "#fragment"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nsample_ratio = 1.5\n", "telemetry.sample_ratio", "3:16", "must be from 0 to 1, found 1.5"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nsample_ratio = -1\n", "telemetry.sample_ratio", "3:16", "must be from 0 to 1, found -1"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nsample_ratio = \"0.5\"\n", "telemetry.sample_ratio", "3:16", "without quotes"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nservice_name = \"\"\n", "telemetry.service_name", "3:16", "the service name is empty"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nservice_name = 7\n", "telemetry.service_name", "3:16", "expected a string, found integer"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nheaders = \"Authorization: x\"\n", "telemetry.headers", "3:11", "expected a table of header names to values"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nheaders = { \"bad name\" = \"x\" }\n", "telemetry.headers.bad name", "3:13", "not a valid header name"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nheaders = { Content-Type = \"x\" }\n", "telemetry.headers.Content-Type", "3:13", "set by the exporter"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nheaders = { a = \"x\", A = \"y\" }\n", "telemetry.headers.A", "3:22", "given twice"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nheaders = { Authorization = \"${MISSING_TOKEN}\" }\n", "telemetry.headers.Authorization", "3:29", "MISSING_TOKEN"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nheaders = { X = \"a\\nb\" }\n", "telemetry.headers.X", "3:17", "line breaks"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nendpoint = \"x\"\n", "telemetry.endpoint", "3:1", "unknown setting `endpoint` in [telemetry]; valid settings: otlp_endpoint"),
        ("[telemetry]\notlp_endpoint = \"http://otel.example\"\nsample_rate = 1\n", "telemetry.sample_rate", "3:1", "did you mean `sample_ratio`?"),
        ("[telemtry]\n", "telemtry", "1:2", "did you mean [telemetry]?"),
        ("otlp_endpoint = \"http://otel.example\"\n", "otlp_endpoint", "1:1", "belongs in the [telemetry] table"),
        ("telemetry = true\n", "telemetry", "1:13", "expected a [telemetry] table, found boolean"),
    ];
    for (text, key, at, message) in cases {
        let errors = problems(text);
        assert_eq!(errors.len(), 1, "{text}: {errors:#?}");
        let error = &errors[0];
        assert_eq!(error.key, key, "{text}: {error}");
        assert_eq!(error.location, format!("herald.toml:{at}"), "{text}: {error}");
        assert!(error.message.contains(message), "{text}: {error}");
        assert!(!error.message.contains("hunter2-do-not-print"), "{text}: {error}");
    }
}
