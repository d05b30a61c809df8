//! Tests of `herald token create`'s output: it parses back into a working configuration.
#![allow(clippy::unwrap_used)]

use herald_api::{ApiToken, Scope, TOKEN_PREFIX};

use super::{create, parse_scope};
use crate::config::Config;

#[test]
fn the_printed_entry_is_a_valid_config_for_the_printed_token() {
    let created = create("oncall-cli", &[Scope::Read, Scope::Operate, Scope::Read]).unwrap();
    assert!(created.token.starts_with(TOKEN_PREFIX));
    assert!(!created.entry.contains(&created.token), "the entry holds the token itself");
    let text = format!("[server]\nlisten = \"0.0.0.0:8443\"\n\n{}", created.entry);
    let config = Config::parse(&text, "herald.toml", &|_| None).unwrap();
    assert_eq!(config.tokens.len(), 1);
    let token = &config.tokens[0];
    assert_eq!(token.name, "oncall-cli");
    assert_eq!(token.scopes, [Scope::Read, Scope::Operate]);
    assert!(ApiToken::find(&config.tokens, &created.token).is_some());

    let printed = created.text("oncall-cli");
    assert!(printed.lines().any(|line| line == created.token), "{printed}");
    assert!(printed.contains(&created.entry), "{printed}");
    assert!(printed.contains("HERALD_TOKEN") && printed.contains("--token-file"), "{printed}");
    // Two runs, two tokens.
    assert_ne!(
        create("a", &[Scope::Send]).unwrap().token,
        create("a", &[Scope::Send]).unwrap().token
    );
}

#[test]
fn bad_names_and_scopes_are_refused() {
    let error = create("Alert Manager", &[Scope::Send]).unwrap_err().to_string();
    assert!(error.starts_with("--name: invalid name"), "{error}");
    let error = create("am", &[]).unwrap_err().to_string();
    assert!(error.contains("at least one --scope"), "{error}");
    assert_eq!(parse_scope("operate"), Ok(Scope::Operate));
    let error = parse_scope("root").unwrap_err();
    assert_eq!(error, "unknown scope \"root\"; scopes: send, read, operate, admin");
}
