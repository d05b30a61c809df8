//! `check-config`'s look at where destinations point: every server a destination
//! connects to is resolved (each name bounded by [`RESOLVE_TIMEOUT`], all at once) and
//! vetted against `[outbound]`, so a destination herald would refuse is named before its
//! first delivery fails.
//!
//! Only a warning: DNS answers differ between machines and over time, and the policy is
//! applied again to every connection anyway. A name that does not resolve here is a note,
//! not a problem (it may resolve only where herald runs).

use std::fmt;
use std::time::Duration;

use herald_connectors::outbound::{ResolveError, Server};
use tokio::task::JoinSet;

use crate::config::Config;

/// How long one name may take to resolve before `check-config` gives up on it.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `check-config` says about one configured server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// herald would refuse to connect: `destinations.NAME.KEY` and the refusal's words.
    Refused {
        /// The dotted key that configures the server.
        key: String,
        /// The refusal: the address, the rule and the key that would allow it.
        reason: String,
    },
    /// The name did not resolve here (or not in time).
    Unresolved {
        /// The dotted key that configures the server.
        key: String,
        /// What the resolver said.
        reason: String,
    },
}

impl Finding {
    /// What was found and what it means, without the `warning:`/`note:` label.
    pub fn text(&self) -> String {
        match self {
            Finding::Refused { key, reason } => {
                format!("{key}: {reason}; every delivery to it will fail")
            }
            Finding::Unresolved { key, reason } => format!(
                "{key}: {reason}; if it resolves where herald runs, its addresses are checked \
                 there at each connection"
            ),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self {
            Finding::Refused { .. } => "warning",
            Finding::Unresolved { .. } => "note",
        };
        write!(f, "{label}: {}", self.text())
    }
}

/// Resolves and vets every destination's servers under `config.outbound`; the findings
/// in file order (nothing for a server that passes).
pub async fn check(config: &Config) -> Vec<Finding> {
    let mut lookups = JoinSet::new();
    let servers = config.destinations.iter().flat_map(|destination| {
        let prefix = format!("destinations.{}", destination.name);
        destination.connector.servers().into_iter().map(move |server| (prefix.clone(), server))
    });
    for (order, (prefix, Server { key, host, port })) in servers.enumerate() {
        let outbound = config.outbound.clone();
        let key = format!("{prefix}.{key}");
        lookups.spawn(async move {
            let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, outbound.resolve(&host, port));
            let finding = match resolved.await {
                Ok(Ok(_)) => None,
                Ok(Err(ResolveError::Refused(refused))) => {
                    Some(Finding::Refused { key, reason: refused.to_string() })
                }
                Ok(Err(lookup)) => Some(Finding::Unresolved { key, reason: lookup.to_string() }),
                Err(_) => Some(Finding::Unresolved {
                    key,
                    reason: format!(
                        "{host} did not resolve within {}",
                        humantime::format_duration(RESOLVE_TIMEOUT)
                    ),
                }),
            };
            (order, finding)
        });
    }
    let mut findings: Vec<(usize, Finding)> = Vec::new();
    while let Some(joined) = lookups.join_next().await {
        if let Ok((order, Some(finding))) = joined {
            findings.push((order, finding));
        }
    }
    findings.sort_by_key(|(order, _)| *order);
    findings.into_iter().map(|(_, finding)| finding).collect()
}
