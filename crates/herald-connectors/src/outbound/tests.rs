//! Unit tests of the outbound policy: the address rules as a table, allowances
//! (including IPv4 carried in IPv6), `allow_networks` entries, the refusal's words and
//! name resolution through the policy.

#![allow(clippy::unwrap_used)]

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// What [`rule`] says of `address`, in words; `public` when nothing refuses it.
fn words(address: &str) -> String {
    rule(ip(address)).map_or_else(|| "public".to_owned(), |rule| rule.to_string())
}

#[test]
fn address_rules() {
    #[rustfmt::skip]
    let table: &[(&str, &str)] = &[
        // IPv4.
        ("0.0.0.0", "an unspecified (\"this host\") address"),
        ("0.1.2.3", "an unspecified (\"this host\") address"),
        ("10.0.0.1", "a private address (RFC 1918)"),
        ("10.255.255.255", "a private address (RFC 1918)"),
        ("100.63.255.255", "public"),
        ("100.64.0.1", "a carrier-grade NAT address (RFC 6598)"),
        ("100.127.255.255", "a carrier-grade NAT address (RFC 6598)"),
        ("100.128.0.0", "public"),
        ("127.0.0.1", "a loopback address"),
        ("127.1.2.3", "a loopback address"),
        ("169.254.169.254", "the cloud metadata service's address (link-local)"),
        ("169.254.0.1", "a link-local address"),
        ("172.15.255.255", "public"),
        ("172.16.0.1", "a private address (RFC 1918)"),
        ("172.31.255.255", "a private address (RFC 1918)"),
        ("172.32.0.0", "public"),
        ("192.0.0.8", "a reserved address"),
        ("192.0.2.10", "a documentation address"),
        ("192.88.99.1", "a reserved address"),
        ("192.168.1.1", "a private address (RFC 1918)"),
        ("198.18.0.1", "a benchmarking address (RFC 2544)"),
        ("198.19.255.255", "a benchmarking address (RFC 2544)"),
        ("198.51.100.7", "a documentation address"),
        ("203.0.113.9", "a documentation address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "the broadcast address"),
        ("1.1.1.1", "public"),
        ("8.8.8.8", "public"),
        ("93.184.215.14", "public"),
        ("223.255.255.255", "public"),
        // IPv6.
        ("::", "an unspecified (\"this host\") address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address"),
        ("::ffff:169.254.169.254", "an IPv4-mapped IPv6 address of 169.254.169.254, the cloud metadata service's address (link-local)"),
        ("::ffff:10.0.0.1", "an IPv4-mapped IPv6 address of 10.0.0.1, a private address (RFC 1918)"),
        ("::ffff:0.0.0.0", "an IPv4-mapped IPv6 address of 0.0.0.0, an unspecified (\"this host\") address"),
        ("::ffff:8.8.8.8", "public"),
        ("::127.0.0.1", "a deprecated IPv4-compatible IPv6 address"),
        ("::8.8.8.8", "a deprecated IPv4-compatible IPv6 address"),
        ("64:ff9b::7f00:1", "a NAT64 address of 127.0.0.1, a loopback address"),
        ("64:ff9b::a9fe:a9fe", "a NAT64 address of 169.254.169.254, the cloud metadata service's address (link-local)"),
        ("64:ff9b::808:808", "public"),
        ("64:ff9b:1::a00:1", "a local-use NAT64 address (RFC 8215)"),
        ("100::1", "a reserved address"),
        ("2001::1", "a Teredo tunnel address"),
        ("2001:2::1", "a benchmarking address (RFC 2544)"),
        ("2001:db8::1", "a documentation address"),
        ("3fff::1", "a documentation address"),
        ("2002:7f00:1::1", "a 6to4 address of 127.0.0.1, a loopback address"),
        ("2002:0a00:0001::1", "a 6to4 address of 10.0.0.1, a private address (RFC 1918)"),
        ("2002:0808:0808::1", "public"),
        ("fc00::1", "a unique-local IPv6 address (RFC 4193)"),
        ("fd12:3456::1", "a unique-local IPv6 address (RFC 4193)"),
        ("fe80::1", "a link-local address"),
        ("febf::1", "a link-local address"),
        ("fec0::1", "a site-local IPv6 address (deprecated)"),
        ("ff02::1", "a multicast address"),
        ("4000::1", "a reserved address"),
        ("2606:4700::1111", "public"),
        ("2a00:1450:4001::1", "public"),
    ];
    let mut wrong = Vec::new();
    for (address, expected) in table {
        let said = words(address);
        if said != *expected {
            wrong.push(format!("{address}: {said}, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn nothing_but_the_public_internet_is_allowed_by_default() {
    let outbound = Outbound::default();
    assert!(outbound.check(ip("1.1.1.1")).is_ok());
    assert!(outbound.check(ip("2606:4700::1111")).is_ok());
    for refused in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"] {
        let error = outbound.check(ip(refused)).unwrap_err();
        assert_eq!(error.address, ip(refused));
        assert_eq!(error.host, None);
    }
}

#[test]
fn an_allowed_network_lets_its_addresses_through_and_no_others() {
    let outbound = Outbound::allowing([parse_network("10.20.0.0/16").unwrap()]);
    assert!(outbound.check(ip("10.20.3.4")).is_ok());
    assert!(outbound.check(ip("10.21.0.1")).is_err());
    assert!(outbound.check(ip("127.0.0.1")).is_err());
    // The same host written as IPv6 that carries it.
    assert!(outbound.check(ip("::ffff:10.20.3.4")).is_ok());
    assert!(outbound.check(ip("64:ff9b::a14:304")).is_ok());
    assert!(outbound.check(ip("::ffff:10.21.0.1")).is_err());
}

#[test]
fn loopback_allowed_covers_both_families_and_nothing_else() {
    let outbound = Outbound::allowing_loopback();
    for allowed in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
        assert!(outbound.check(ip(allowed)).is_ok(), "{allowed}");
    }
    for refused in ["10.0.0.1", "169.254.169.254", "0.0.0.0", "::", "fe80::1"] {
        assert!(outbound.check(ip(refused)).is_err(), "{refused}");
    }
}

#[test]
fn one_refused_address_refuses_the_name() {
    let outbound = Outbound::default();
    let error = outbound.check_all("mixed.example", &[ip("1.1.1.1"), ip("10.0.0.7")]).unwrap_err();
    assert_eq!(error.host.as_deref(), Some("mixed.example"));
    assert_eq!(error.address, ip("10.0.0.7"));
    assert!(outbound.check_all("public.example", &[ip("1.1.1.1"), ip("2606:4700::1")]).is_ok());
}

#[test]
fn allow_network_entries() {
    let net = |text: &str| parse_network(text).map(|net| net.to_string());
    assert_eq!(net("10.20.0.0/16").unwrap(), "10.20.0.0/16");
    assert_eq!(net(" 10.20.7.7/16 ").unwrap(), "10.20.0.0/16");
    assert_eq!(net("10.20.0.5").unwrap(), "10.20.0.5/32");
    assert_eq!(net("::1").unwrap(), "::1/128");
    assert_eq!(net("fd00::/8").unwrap(), "fd00::/8");
    for bad in ["10.20.0.0/33", "localhost", "10.20/16", "", "[::1]"] {
        let error = net(bad).unwrap_err();
        assert!(error.contains("is not a network; write"), "{bad}: {error}");
    }
}

#[test]
fn a_refusal_names_the_address_the_rule_and_the_key() {
    let literal = Outbound::default().check(ip("127.0.0.1")).unwrap_err();
    assert_eq!(
        literal.to_string(),
        "127.0.0.1 is a loopback address; herald connects only to public addresses unless \
         `[outbound] allow_networks` includes the address, e.g. allow_networks = \
         [\"127.0.0.1/32\"]"
    );
    let mapped = Outbound::default().check(ip("::ffff:127.0.0.1")).unwrap_err().to_string();
    assert!(
        mapped.starts_with(
            "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address;"
        ),
        "{mapped}"
    );
    assert!(mapped.ends_with("allow_networks = [\"127.0.0.1/32\"]"), "{mapped}");
    let named = Outbound::default().check_all("db.internal", &[ip("fd00::5")]).unwrap_err();
    assert!(
        named.to_string().starts_with(
            "db.internal resolves to fd00::5, a unique-local IPv6 address (RFC 4193); herald"
        ),
        "{named}"
    );
    assert!(named.to_string().ends_with("[\"fd00::5/128\"]"), "{named}");
}

#[tokio::test]
async fn resolve_vets_names_and_literals() {
    let closed = Outbound::default();
    match closed.resolve("localhost", 25).await {
        Err(ResolveError::Refused(refused)) => {
            assert_eq!(refused.host.as_deref(), Some("localhost"));
            assert_eq!(refused.rule.range, Range::Loopback);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(closed.resolve("[::1]", 25).await, Err(ResolveError::Refused(_))));
    assert!(matches!(closed.resolve("127.0.0.1", 25).await, Err(ResolveError::Refused(_))));

    let open = Outbound::allowing_loopback();
    let addresses = open.resolve("localhost", 2525).await.unwrap();
    assert!(!addresses.is_empty());
    assert!(addresses.iter().all(|a| a.ip().is_loopback() && a.port() == 2525), "{addresses:?}");
    assert_eq!(open.resolve("[::1]", 25).await.unwrap(), vec!["[::1]:25".parse().unwrap()]);

    // `.invalid` never resolves (RFC 6761): a lookup failure, not a refusal.
    let missing = closed.resolve("herald-test.invalid", 25).await.unwrap_err();
    assert!(matches!(missing, ResolveError::Lookup { .. }), "{missing:?}");
    assert!(missing.to_string().starts_with("cannot resolve herald-test.invalid: "), "{missing}");
}

#[test]
fn servers_of_urls() {
    assert_eq!(
        Server::of_url("url", "https://hooks.example/x?token=1"),
        Some(Server { key: "url", host: "hooks.example".into(), port: 443 })
    );
    assert_eq!(
        Server::of_url("base_url", "http://[::1]:8080/api"),
        Some(Server { key: "base_url", host: "[::1]".into(), port: 8080 })
    );
    assert_eq!(Server::of_url("url", "not a url"), None);
}
