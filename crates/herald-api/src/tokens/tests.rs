//! Tests of tokens, their hashes and scopes.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use super::{ApiToken, Scope, TOKEN_PREFIX, TokenHash, new_token};

/// `sha256("test")`, the example in issue 9's configuration.
const TEST_HASH: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn a_hash_is_the_sha256_of_the_token_written_as_sha256_hex() {
    assert_eq!(TokenHash::of("test").to_string(), TEST_HASH);
    assert_eq!(TokenHash::parse(TEST_HASH).unwrap(), TokenHash::of("test"));
    // Upper-case digits are the same hash.
    let upper = format!("sha256:{}", TEST_HASH["sha256:".len()..].to_ascii_uppercase());
    assert_eq!(TokenHash::parse(&upper).unwrap(), TokenHash::of("test"));
    assert_eq!(format!("{:?}", TokenHash::of("test")), format!("TokenHash({TEST_HASH})"));
}

#[test]
fn a_bad_hash_says_what_is_wrong_without_repeating_it() {
    let token = new_token().unwrap();
    let cases = [
        (token.clone(), "is a token itself"),
        (
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            "starts with `sha256:`",
        ),
        ("sha1:a94a8fe5ccb19ba61c4c0873d391e987982fbbd3".into(), "starts with `sha256:`"),
        ("sha256:abc1234".into(), "this one has 7"),
        (format!("sha256:{}", "g".repeat(64)), "only hexadecimal digits"),
        (format!("sha256:{}é", "a".repeat(62)), "only hexadecimal digits"),
        ("sha256:".into(), "this one has 0"),
    ];
    for (text, fragment) in cases {
        let message = TokenHash::parse(&text).unwrap_err();
        assert!(message.contains(fragment), "{text}: {message}");
        assert!(message.contains("herald token create"), "{text}: {message}");
        if text != "sha256:" {
            assert!(!message.contains(&text), "the message repeats the input: {message}");
        }
    }
}

#[test]
fn new_tokens_carry_256_random_bits_behind_the_prefix() {
    let tokens: HashSet<String> = (0..64).map(|_| new_token().unwrap()).collect();
    assert_eq!(tokens.len(), 64, "two tokens were the same");
    for token in &tokens {
        let body = token.strip_prefix(TOKEN_PREFIX).unwrap();
        // 32 bytes in base64url without padding.
        assert_eq!(body.len(), 43, "{token}");
        assert!(body.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{token}");
    }
}

#[test]
fn admin_allows_every_scope_and_the_others_only_themselves() {
    let token = |scopes: &[Scope]| ApiToken {
        name: "t".into(),
        hash: TokenHash::of("t"),
        scopes: scopes.to_vec(),
    };
    for scope in Scope::ALL {
        assert!(token(&[Scope::Admin]).allows(scope));
        assert!(token(&[scope]).allows(scope));
        for other in Scope::ALL.into_iter().filter(|other| *other != scope) {
            assert_eq!(token(&[scope]).allows(other), scope == Scope::Admin, "{scope} {other}");
        }
    }
    assert!(token(&[Scope::Read, Scope::Operate]).allows(Scope::Operate));
    assert!(!token(&[Scope::Read, Scope::Operate]).allows(Scope::Send));
    assert_eq!(Scope::names(), "send, read, operate, admin");
    for scope in Scope::ALL {
        assert_eq!(Scope::parse(scope.name()), Some(scope));
    }
    assert_eq!(Scope::parse("Admin"), None);
}

#[test]
fn find_recognises_a_configured_token_by_its_hash_only() {
    let (one, two) = (new_token().unwrap(), new_token().unwrap());
    let tokens = vec![
        ApiToken { name: "one".into(), hash: TokenHash::of(&one), scopes: vec![Scope::Send] },
        ApiToken { name: "two".into(), hash: TokenHash::of(&two), scopes: vec![Scope::Read] },
    ];
    assert_eq!(ApiToken::find(&tokens, &one).unwrap().name, "one");
    assert_eq!(ApiToken::find(&tokens, &two).unwrap().name, "two");
    assert!(ApiToken::find(&tokens, &new_token().unwrap()).is_none());
    assert!(ApiToken::find(&tokens, "").is_none());
    // The hash itself is not a token.
    assert!(ApiToken::find(&tokens, &TokenHash::of(&one).to_string()).is_none());
}
