//! The outbound policy: which network addresses connectors may connect to.
//!
//! A destination URL is configuration, and whoever writes it must not be able to aim
//! herald at its own network (server-side request forgery): the cloud metadata service
//! at 169.254.169.254, a database on loopback, an admin page on 10.0.0.5. So every
//! address a connector connects to is vetted here first: an address outside the public
//! internet ([`rule`]) is refused unless its network is in `[outbound] allow_networks`.
//! A name is refused when any address it resolves to is refused, and the connection then
//! goes only to the addresses vetted here ([`Resolver`] for HTTP, [`Outbound::resolve`]
//! for SMTP), so a DNS answer that changes between the check and the connection cannot
//! slip through.
//!
//! This module decides and resolves; it does not connect. HTTP goes through
//! [`crate::http::Client`], which applies the policy to every request, never through a
//! proxy (a proxy would connect on herald's behalf, out of the policy's sight).

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The configuration key that allows private networks, named in every refusal.
pub const ALLOW_KEY: &str = "[outbound] allow_networks";

/// Which non-public networks destinations may reach; public addresses are always
/// allowed. `Outbound::default()` allows the public internet only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbound {
    /// The networks of `allow_networks`, host bits cleared.
    allowed: Vec<IpNet>,
}

impl Outbound {
    /// The public internet plus `networks` (as `allow_networks` lists them).
    pub fn allowing(networks: impl IntoIterator<Item = IpNet>) -> Outbound {
        Outbound { allowed: networks.into_iter().map(|net| net.trunc()).collect() }
    }

    /// The public internet plus loopback (`127.0.0.0/8`, `::1`): for tests, the demo and
    /// the benchmarks, whose destinations are simulators on this machine.
    pub fn allowing_loopback() -> Outbound {
        Outbound::allowing([
            IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::LOCALHOST, 8)),
            IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
        ])
    }

    /// The allowed networks, as configured.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether `address` is inside an allowed network; an IPv6 form that carries an IPv4
    /// address is also allowed when that IPv4 address is (it reaches the same host).
    fn allows(&self, address: IpAddr) -> bool {
        let embedded = match address {
            IpAddr::V6(v6) => embedded_v4(v6).map(|(_, v4)| IpAddr::V4(v4)),
            IpAddr::V4(_) => None,
        };
        self.allowed
            .iter()
            .any(|net| net.contains(&address) || embedded.is_some_and(|v4| net.contains(&v4)))
    }

    /// Checks an address written as such (an IP literal in a URL).
    ///
    /// # Errors
    /// [`Refused`] when the address is not public and not allowed.
    pub fn check(&self, address: IpAddr) -> Result<(), Refused> {
        self.vet(None, address)
    }

    /// Checks every address `host` resolved to: one refused address refuses the name,
    /// since the connection could go to any of them.
    ///
    /// # Errors
    /// [`Refused`] for the first address that is not public and not allowed.
    pub fn check_all(&self, host: &str, addresses: &[IpAddr]) -> Result<(), Refused> {
        addresses.iter().try_for_each(|address| self.vet(Some(host), *address))
    }

    fn vet(&self, host: Option<&str>, address: IpAddr) -> Result<(), Refused> {
        match rule(address) {
            Some(rule) if !self.allows(address) => {
                Err(Refused { host: host.map(str::to_owned), address, rule })
            }
            _ => Ok(()),
        }
    }

    /// The vetted socket addresses of `host` (a name or an IP literal, IPv6 with or
    /// without brackets) on `port`: what a connection may use, and nothing else.
    ///
    /// # Errors
    /// [`ResolveError::Refused`] when an address is refused, [`ResolveError::Lookup`]
    /// when the name does not resolve.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(address) = bare.parse::<IpAddr>() {
            self.check(address)?;
            return Ok(vec![SocketAddr::new(address, port)]);
        }
        let lookup = |error: std::io::Error| ResolveError::Lookup { host: bare.to_owned(), error };
        let addresses: Vec<SocketAddr> =
            tokio::net::lookup_host((bare, port)).await.map_err(lookup)?.collect();
        if addresses.is_empty() {
            return Err(lookup(std::io::Error::other("the name has no addresses")));
        }
        let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
        self.check_all(bare, &ips)?;
        Ok(addresses)
    }
}

/// Parses one `allow_networks` entry: a network (`10.20.0.0/16`, `fd00::/8`) or a
/// single address (`10.20.0.5`, `::1`), which stands for itself alone.
///
/// # Errors
/// What to write instead, when `text` is neither.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    text.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| {
        format!(
            "{text:?} is not a network; write an address with a prefix length such as \
             \"10.20.0.0/16\" or \"fd00::/8\", or a single address such as \"10.20.0.5\""
        )
    })
}

/// A connection herald refused to open: which address, why, and how to allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The name that resolved to `address`, or `None` for an IP literal.
    pub host: Option<String>,
    /// The refused address.
    pub address: IpAddr,
    /// The range it falls in.
    pub rule: Rule,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Refused { host, address, rule } = self;
        match host {
            Some(host) => write!(f, "{host} resolves to {address}, {rule}")?,
            None => write!(f, "{address} is {rule}")?,
        }
        // The smallest allowance that lets this one address through.
        let suggestion = match rule.via {
            Some((_, v4)) => IpNet::from(IpAddr::V4(v4)),
            None => IpNet::from(*address),
        };
        write!(
            f,
            "; herald connects only to public addresses unless `{ALLOW_KEY}` includes the \
             address, e.g. allow_networks = [\"{suggestion}\"]"
        )
    }
}

impl std::error::Error for Refused {}

/// Why a name could not be turned into addresses to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// An address is refused by the policy.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The name did not resolve (no such name, no answer from DNS).
    #[error("cannot resolve {host}: {error}")]
    Lookup {
        /// The name.
        host: String,
        /// The resolver's error.
        error: std::io::Error,
    },
}

/// reqwest's name resolver with the policy applied: it answers only with vetted
/// addresses, so the connection is pinned to what was checked. A refusal is its error,
/// found again by [`crate::http::classify_error`] in the error's causes.
#[derive(Debug)]
pub(crate) struct Resolver {
    /// The policy shared with the client that uses this resolver.
    pub(crate) outbound: Arc<Outbound>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let outbound = Arc::clone(&self.outbound);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts in the URL's port.
            match outbound.resolve(&host, 0).await {
                Ok(addresses) => Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs),
                Err(ResolveError::Refused(refused)) => Err(refused.into()),
                Err(error) => Err(error.into()),
            }
        })
    }
}

/// A server a destination connects to, as configured, so that `check-config` can vet it
/// before any delivery: the key that names it, its host and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The destination key that configures it (`url`, `base_url`, `smtp`, ...).
    pub key: &'static str,
    /// The host: a name or an IP literal (IPv6 in brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Server {
    /// The server of the http(s) URL `url` configured under `key`; `None` when it has no
    /// host (the kind's own checks reject such a URL).
    pub fn of_url(key: &'static str, url: &str) -> Option<Server> {
        let parsed = reqwest::Url::parse(url.trim()).ok()?;
        Some(Server {
            key,
            host: parsed.host_str()?.to_owned(),
            port: parsed.port_or_known_default()?,
        })
    }
}

/// Why an address is refused: the range it lies in, and for an IPv6 form that carries
/// an IPv4 address (IPv4-mapped, NAT64, 6to4), that form and the address it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The range of the address, or of the IPv4 address it carries.
    pub range: Range,
    /// The IPv6 form and the IPv4 address it carries, when the range is that address's.
    pub via: Option<(Embedding, Ipv4Addr)>,
}

/// `a loopback address`, or `an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            Some((form, v4)) => write!(f, "{} of {v4}, {}", form.words(), self.range.words()),
            None => f.write_str(self.range.words()),
        }
    }
}

/// A range of addresses that is not the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Range {
    /// `0.0.0.0/8`, `::`: "this host"; connecting there reaches this machine.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// RFC 6598 shared address space (carrier-grade NAT): `100.64.0.0/10`.
    SharedAddressSpace,
    /// `169.254.169.254`, where cloud providers answer with instance credentials.
    CloudMetadata,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// RFC 4193 unique-local IPv6: `fc00::/7`.
    UniqueLocal,
    /// Deprecated site-local IPv6: `fec0::/10`.
    SiteLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation examples: `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`,
    /// `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// RFC 2544 benchmarking: `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// Deprecated IPv4-compatible IPv6 (`::/96`, other than `::` and `::1`).
    Ipv4Compatible,
    /// Teredo tunnels (`2001::/32`): the far end is an IPv4 host herald cannot vet.
    Teredo,
    /// RFC 8215 local-use NAT64 (`64:ff9b:1::/48`): translated to a network of the
    /// operator's choosing.
    Nat64LocalUse,
    /// Anything else not for use on the public internet: `192.0.0.0/24`,
    /// `192.88.99.0/24`, `240.0.0.0/4`, and IPv6 outside `2000::/3`.
    Reserved,
}

impl Range {
    /// The range in words, with an article: `a loopback address`.
    pub fn words(self) -> &'static str {
        match self {
            Range::Unspecified => "an unspecified (\"this host\") address",
            Range::Loopback => "a loopback address",
            Range::Private => "a private address (RFC 1918)",
            Range::SharedAddressSpace => "a carrier-grade NAT address (RFC 6598)",
            Range::CloudMetadata => "the cloud metadata service's address (link-local)",
            Range::LinkLocal => "a link-local address",
            Range::UniqueLocal => "a unique-local IPv6 address (RFC 4193)",
            Range::SiteLocal => "a site-local IPv6 address (deprecated)",
            Range::Multicast => "a multicast address",
            Range::Broadcast => "the broadcast address",
            Range::Documentation => "a documentation address",
            Range::Benchmarking => "a benchmarking address (RFC 2544)",
            Range::Ipv4Compatible => "a deprecated IPv4-compatible IPv6 address",
            Range::Teredo => "a Teredo tunnel address",
            Range::Nat64LocalUse => "a local-use NAT64 address (RFC 8215)",
            Range::Reserved => "a reserved address",
        }
    }
}

/// An IPv6 form that carries an IPv4 address: connecting to it reaches that address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d`: a dual-stack socket connects to `a.b.c.d` itself.
    Mapped,
    /// `64:ff9b::a.b.c.d` (RFC 6052): a NAT64 gateway translates it to `a.b.c.d`.
    Nat64,
    /// `2002:aabb:ccdd::/48` (6to4): relayed to the IPv4 host `aa.bb.cc.dd`.
    SixToFour,
}

impl Embedding {
    /// The form in words, with an article.
    fn words(self) -> &'static str {
        match self {
            Embedding::Mapped => "an IPv4-mapped IPv6 address",
            Embedding::Nat64 => "a NAT64 address",
            Embedding::SixToFour => "a 6to4 address",
        }
    }
}

/// `a.b.c.d/len` as a constant network.
const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

/// `segments/len` as a constant network.
const fn v6(segments: [u16; 8], len: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

/// The IPv4 ranges that are refused, most specific first (the first match decides).
const V4_RANGES: &[(Ipv4Net, Range)] = &[
    (v4(169, 254, 169, 254, 32), Range::CloudMetadata),
    (v4(255, 255, 255, 255, 32), Range::Broadcast),
    (v4(0, 0, 0, 0, 8), Range::Unspecified),
    (v4(10, 0, 0, 0, 8), Range::Private),
    (v4(100, 64, 0, 0, 10), Range::SharedAddressSpace),
    (v4(127, 0, 0, 0, 8), Range::Loopback),
    (v4(169, 254, 0, 0, 16), Range::LinkLocal),
    (v4(172, 16, 0, 0, 12), Range::Private),
    (v4(192, 0, 0, 0, 24), Range::Reserved),
    (v4(192, 0, 2, 0, 24), Range::Documentation),
    (v4(192, 88, 99, 0, 24), Range::Reserved),
    (v4(192, 168, 0, 0, 16), Range::Private),
    (v4(198, 18, 0, 0, 15), Range::Benchmarking),
    (v4(198, 51, 100, 0, 24), Range::Documentation),
    (v4(203, 0, 113, 0, 24), Range::Documentation),
    (v4(224, 0, 0, 0, 4), Range::Multicast),
    (v4(240, 0, 0, 0, 4), Range::Reserved),
];

/// The IPv6 ranges that are refused, most specific first; the forms that carry an IPv4
/// address are judged by that address before this table ([`embedded_v4`]).
const V6_RANGES: &[(Ipv6Net, Range)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), Range::Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Range::Loopback),
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 96), Range::Ipv4Compatible),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), Range::Nat64LocalUse),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), Range::Teredo),
    (v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48), Range::Benchmarking),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), Range::Documentation),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), Range::Documentation),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), Range::UniqueLocal),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), Range::LinkLocal),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), Range::SiteLocal),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), Range::Multicast),
];

/// Global unicast IPv6; everything outside it not named above is reserved.
const V6_GLOBAL: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// The IPv4 address an IPv6 address carries, and in which form, if it is one of the
/// forms whose connection reaches that IPv4 address.
fn embedded_v4(address: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
    const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
    const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);
    let octets = address.octets();
    let low = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if let Some(v4) = address.to_ipv4_mapped() {
        Some((Embedding::Mapped, v4))
    } else if NAT64.contains(&address) {
        Some((Embedding::Nat64, low))
    } else if SIX_TO_FOUR.contains(&address) {
        Some((Embedding::SixToFour, Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5])))
    } else {
        None
    }
}

/// The rule that refuses `address`, or `None` for a public address.
pub fn rule(address: IpAddr) -> Option<Rule> {
    match address {
        IpAddr::V4(v4) => v4_range(v4).map(|range| Rule { range, via: None }),
        IpAddr::V6(v6) => {
            if let Some((form, v4)) = embedded_v4(v6) {
                return v4_range(v4).map(|range| Rule { range, via: Some((form, v4)) });
            }
            let range = V6_RANGES
                .iter()
                .find(|(net, _)| net.contains(&v6))
                .map(|(_, range)| *range)
                .or_else(|| (!V6_GLOBAL.contains(&v6)).then_some(Range::Reserved));
            range.map(|range| Rule { range, via: None })
        }
    }
}

/// The refused range an IPv4 address lies in.
fn v4_range(address: Ipv4Addr) -> Option<Range> {
    V4_RANGES.iter().find(|(net, _)| net.contains(&address)).map(|(_, range)| *range)
}
