//! Tests of `[[tokens]]`, `metrics_public` and the refusal of an open API off loopback.
#![allow(clippy::unwrap_used)]

use herald_api::{ApiToken, Scope, TokenHash, new_token};

use crate::config::{Config, ConfigError};

/// `sha256("test")`.
const HASH: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    Config::parse(text, "herald.toml", &|_| None).map_err(|errors| errors.0)
}

fn entry(name: &str, hash: &str, scopes: &str) -> String {
    format!("[[tokens]]\nname = \"{name}\"\nhash = \"{hash}\"\nscopes = {scopes}\n")
}

#[test]
fn tokens_and_public_metrics_are_read_and_allow_any_listen_address() {
    let other = TokenHash::of("other");
    let text = format!(
        "[server]\nlisten = \"0.0.0.0:8443\"\nmetrics_public = true\n\n{}\n{}",
        entry("alertmanager", HASH, "[\"send\"]"),
        entry(
            "oncall-cli",
            &other.to_string().to_uppercase().replace("SHA256:", "sha256:"),
            "[\"read\", \"operate\", \"read\"]"
        ),
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8443");
    assert!(config.server.metrics_public);
    assert_eq!(
        config.tokens,
        vec![
            ApiToken {
                name: "alertmanager".into(),
                hash: TokenHash::of("test"),
                scopes: vec![Scope::Send]
            },
            ApiToken {
                name: "oncall-cli".into(),
                hash: other,
                scopes: vec![Scope::Read, Scope::Operate]
            },
        ]
    );
    let config = parse("").unwrap();
    assert!(config.tokens.is_empty());
    assert!(!config.server.metrics_public);
}

#[test]
fn without_tokens_only_a_loopback_listen_address_is_accepted() {
    for listen in ["127.0.0.1:8080", "127.0.0.2:1", "[::1]:8080", "[::ffff:127.0.0.1]:8080"] {
        let text = format!("[server]\nlisten = \"{listen}\"\n");
        assert!(parse(&text).is_ok(), "{listen} was refused");
    }
    for listen in ["0.0.0.0:8443", "[::]:8443", "192.168.1.10:8080", "[::ffff:10.0.0.1]:80"] {
        let text = format!("[server]\ndatabase = \"sqlite://h.db\"\nlisten = \"{listen}\"\n");
        let errors = parse(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let error = &errors[0];
        assert_eq!(
            (error.location.as_str(), error.key.as_str()),
            ("herald.toml:3:10", "server.listen")
        );
        for fragment in [
            "can be reached from other machines",
            "no [[tokens]] are configured",
            "herald token create --name NAME --scope admin",
            "127.0.0.1:",
        ] {
            assert!(error.message.contains(fragment), "{listen}: {}", error.message);
        }
    }
}

#[test]
fn each_bad_token_entry_reports_key_location_and_advice() {
    let token = new_token().unwrap();
    let hash = HASH;
    let two = |first: &str, second: &str| format!("{first}\n{second}");
    #[rustfmt::skip]
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (entry("am", &token, "[\"send\"]"), "tokens[0].hash", "3:8", "is a token itself (it starts with `hrld_`), not its hash"),
        (entry("am", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "[\"send\"]"), "tokens[0].hash", "3:8", "starts with `sha256:`"),
        (entry("am", "sha256:9f86d0", "[\"send\"]"), "tokens[0].hash", "3:8", "this one has 6"),
        (entry("am", "sha256:zz86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "[\"send\"]"), "tokens[0].hash", "3:8", "only hexadecimal digits"),
        (entry("am", hash, "[\"operat\"]"), "tokens[0].scopes", "4:11", "unknown scope \"operat\"; did you mean \"operate\"? scopes: send, read, operate, admin"),
        (entry("am", hash, "[\"root\"]"), "tokens[0].scopes", "4:11", "unknown scope \"root\"; scopes: send, read, operate, admin"),
        (entry("am", hash, "[]"), "tokens[0].scopes", "4:10", "a token without scopes can do nothing"),
        (entry("am", hash, "\"send\""), "tokens[0].scopes", "4:10", "expected a list of scopes"),
        (entry("am", hash, "[1]"), "tokens[0].scopes", "4:11", "expected a string, found integer"),
        (entry("Alert Manager", hash, "[\"send\"]"), "tokens[0].name", "2:8", "invalid name"),
        ("[[tokens]]\nname = \"am\"\nscopes = [\"send\"]\n".into(), "tokens[0].hash", "1:1", "missing `hash`; add hash = \"sha256:...\" (from `herald token create`)"),
        ("[[tokens]]\nhash = \"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\nscopes = [\"send\"]\n".into(), "tokens[0].name", "1:1", "missing `name`"),
        ("[[tokens]]\nname = \"am\"\nhash = \"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n".into(), "tokens[0].scopes", "1:1", "missing `scopes`"),
        (format!("{}token = \"x\"\n", entry("am", hash, "[\"send\"]")), "tokens[0].token", "5:1", "unknown setting `token` in [[tokens]]; valid settings: name, hash, scopes"),
        (format!("{}scope = [\"send\"]\n", entry("am", hash, "[\"send\"]")), "tokens[0].scope", "5:1", "did you mean `scopes`?"),
        (two(&entry("am", hash, "[\"send\"]"), &entry("am", &TokenHash::of("b").to_string(), "[\"read\"]")), "tokens[1].name", "7:8", "another [[tokens]] entry is also named `am`"),
        (two(&entry("am", hash, "[\"send\"]"), &entry("cli", hash, "[\"read\"]")), "tokens[1].hash", "8:8", "the same token as the [[tokens]] entry `am`"),
        ("[tokens]\nname = \"am\"\n".into(), "tokens", "1:1", "expected one [[tokens]] with name"),
        ("tokens = [\"x\"]\n".into(), "tokens[0]", "1:11", "expected a [[tokens]] with name"),
        ("[server]\nmetrics_public = \"yes\"\n".into(), "server.metrics_public", "2:18", "expected true or false, found string"),
        // A broken [[tokens]] is reported for itself, not also as "no tokens".
        (format!("[server]\nlisten = \"0.0.0.0:1\"\n{}", entry("am", hash, "[]")), "tokens[0].scopes", "6:10", "without scopes"),
    ];
    let mut failures = Vec::new();
    for (text, key, at, fragment) in &cases {
        let errors = parse(text).unwrap_err();
        let location = format!("herald.toml:{at}");
        let found = errors
            .iter()
            .any(|e| e.key == *key && e.location == location && e.message.contains(fragment));
        for error in &errors {
            assert!(!error.message.contains(&token), "an error repeats the token: {error}");
        }
        if !found || errors.len() != 1 {
            failures.push(format!(
                "input:\n{text}\nwanted exactly one error {location} [{key}] ~ {fragment:?}\ngot:\n{}\n",
                crate::config::ConfigErrors(errors)
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
