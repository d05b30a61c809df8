//! `herald.toml`: parsing, validation and the typed configuration the engine runs with.
//!
//! [`Config::parse`] checks the whole file and reports every problem it finds, each with
//! its `file:line:column`, the dotted key it concerns and what to do about it; only a
//! file without a single problem becomes a [`Config`]. `[[tokens]]` (API tokens by hash,
//! in `config/build/tokens.rs`) are required when `server.listen` is not a loopback
//! address. Secrets (`${ENV_VAR}`,
//! `file:/path` or inline `whsec_...`) are resolved while parsing, and no error message
//! ever contains a secret's value.
//!
//! Relative paths (the SQLite database, `file:` secrets) are taken relative to the
//! working directory of the process, not to the configuration file. The inbound TLS
//! certificate and key are read and checked here too (`crate::tls`), so a broken pair
//! is a configuration error.
//!
//! Durations are written as whole numbers with a unit, `ms`, `s`, `m`, `h` or `d`,
//! optionally combined (`"250ms"`, `"10m"`, `"1h30m"`); rate limits as
//! `"COUNT/PERIOD"` (`"10/s"`, `"100/m"`, `"5/250ms"`).

mod build;
#[cfg(test)]
mod tests;
mod values;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_api::ApiToken;
use herald_connectors::ConnectorConfig;
use herald_connectors::outbound::Outbound;
use herald_connectors::redact::Redactor;
use herald_core::OnUnknown;
use herald_engine::LaneSettings;

use crate::tls::TlsIdentity;

/// The whole `herald.toml`, validated, with defaults applied and secrets resolved.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The `[server]` table.
    pub server: ServerConfig,
    /// The `[destinations.NAME]` tables, in file order.
    pub destinations: Vec<DestinationConfig>,
    /// The `[groups]` table: group name to destination names, as written.
    pub groups: BTreeMap<String, Vec<String>>,
    /// The `[retention]` table.
    pub retention: RetentionConfig,
    /// Every secret the file resolved (tokens, passwords, credential URLs): what the
    /// process must never print, log or store.
    pub redactor: Redactor,
    /// Where a secret is written inline, located, with what to do instead.
    inline_secrets: Vec<String>,
    /// The `[outbound]` table: the networks destinations may reach besides the public
    /// internet (`allow_networks`).
    pub outbound: Outbound,
    /// The `[[tokens]]` entries: API tokens by hash, with their scopes. Empty: the API
    /// is open, which the configuration allows only on a loopback `listen` address.
    pub tokens: Vec<ApiToken>,
    /// The `[telemetry]` table: where herald sends its traces. `None`: nowhere, and
    /// no exporter runs.
    pub telemetry: Option<TelemetryConfig>,
}

/// The `[telemetry]` table: OpenTelemetry trace export over OTLP/HTTP.
#[derive(Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans are POSTed: `otlp_endpoint` with `/v1/traces` appended, unless it
    /// already ends so.
    pub traces_url: String,
    /// The `service.name` resource attribute (`herald`).
    pub service_name: String,
    /// Headers sent with every export (credentials for the collector), resolved.
    pub headers: Vec<(String, String)>,
    /// The share of traces exported, from 0 to 1 (`1`).
    pub sample_ratio: f64,
}

/// Header values are left out: they are usually credentials.
impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("TelemetryConfig")
            .field("traces_url", &self.traces_url)
            .field("service_name", &self.service_name)
            .field("headers", &names)
            .field("sample_ratio", &self.sample_ratio)
            .finish()
    }
}

/// The `[retention]` table: how long terminal broadcasts are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Broadcasts whose every delivery was delivered (`7d`).
    pub delivered: Duration,
    /// Terminal broadcasts with a failed or cancelled delivery (`30d`).
    pub failed: Duration,
}

/// The defaults live with the engine's retention task, in one place.
impl Default for RetentionConfig {
    fn default() -> RetentionConfig {
        let engine = herald_engine::Retention::default();
        RetentionConfig { delivered: engine.delivered, failed: engine.failed }
    }
}

impl Config {
    /// What `check-config` warns about: secrets written inline, then every
    /// destination's warnings, each in file order.
    pub fn warnings(&self) -> Vec<String> {
        let inline = self.inline_secrets.iter().cloned();
        inline.chain(self.destinations.iter().flat_map(DestinationConfig::warnings)).collect()
    }
}

/// The `[server]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the HTTP API listens (`127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Where the intents and delivery states are stored (`sqlite://herald.db`).
    pub database: Database,
    /// This node's name in a shared (PostgreSQL) database: written to the leases it
    /// holds and the attempts it makes. `None`: the host name and process id.
    pub node_id: Option<String>,
    /// How long in-flight attempts may finish after SIGTERM (`10s`).
    pub shutdown_grace: Duration,
    /// The most API requests served at once; more get `503` (`1024`; SSE not counted).
    pub max_concurrent_requests: usize,
    /// The longest an API request may take before it is answered `503` (`10s`).
    pub request_timeout: Duration,
    /// The longest one database call may take before the request is answered `503`
    /// (`5s`).
    pub store_timeout: Duration,
    /// How many submits and updates may wait for the database writer before new ones
    /// get `503` (`1024`).
    pub submit_queue: usize,
    /// Serve HTTPS with this certificate chain and key (`tls_cert`, `tls_key`); `None`:
    /// plain HTTP.
    pub tls: Option<TlsIdentity>,
    /// The largest request body in bytes; larger get `413` (`262144`, 256 KiB).
    pub max_body_bytes: usize,
    /// The largest request head (request line and headers) in bytes; larger get `431`
    /// (`16384`, 16 KiB).
    pub max_header_bytes: usize,
    /// How long the TLS handshake, and each request head, may take to arrive before the
    /// connection is closed (`10s`); also how long an idle keep-alive connection stays.
    pub header_read_timeout: Duration,
    /// The most API connections open at once; more wait to be accepted (`4096`).
    pub max_connections: usize,
    /// Whether `/metrics` answers without a token when `[[tokens]]` are configured
    /// (`false`: it needs `read`).
    pub metrics_public: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            database: Database::Sqlite { path: PathBuf::from("herald.db") },
            node_id: None,
            shutdown_grace: Duration::from_secs(10),
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(10),
            store_timeout: Duration::from_secs(5),
            submit_queue: 1024,
            tls: None,
            max_body_bytes: herald_api::Limits::default().max_body_bytes,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            metrics_public: false,
        }
    }
}

/// The store behind the engine, from `server.database`.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file (`sqlite://herald.db` or `sqlite:///var/lib/herald/herald.db`).
    Sqlite {
        /// The database file, relative to the working directory unless absolute.
        path: PathBuf,
    },
    /// A PostgreSQL database shared by every node that names it
    /// (`postgres://herald@db.internal:5432/herald`).
    Postgres {
        /// The URL as written; it may carry a password, so `Debug` does not show it.
        url: String,
    },
}

/// Never shows a PostgreSQL URL: it may carry a password.
impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            Database::Postgres { .. } => f.write_str("Postgres { url: <redacted> }"),
        }
    }
}

impl ServerConfig {
    /// `node_id`, or this process's default: the host name and process id.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(default_node_id)
    }
}

/// `HOST-PID`: unique among the processes that run at once, different after a restart.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "herald".into());
    format!("{host}-{}", std::process::id())
}

/// One `[destinations.NAME]` table.
#[derive(Clone)]
pub struct DestinationConfig {
    /// The destination's name (`ops-webhook`).
    pub name: String,
    /// The kind and its settings, secrets resolved.
    pub connector: ConnectorConfig,
    /// Retry policy, rate limit, concurrency and circuit breaker, defaults applied.
    pub settings: LaneSettings,
}

impl DestinationConfig {
    /// Settings that are valid but cannot do what the operator probably meant, in plain
    /// words: shown by `check-config` and logged by `serve`.
    pub fn warnings(&self) -> Vec<String> {
        let capabilities = self.connector.capabilities();
        let dedupe = self.settings.dedupe.unwrap_or(capabilities.dedupe_by_key);
        let resolves = dedupe || capabilities.lookup;
        let prefix = format!("destinations.{}", self.name);
        let mut res = Vec::new();
        match (resolves, self.settings.policy.on_unknown) {
            (false, OnUnknown::Resend) if self.settings.dedupe.is_some() => res.push(format!(
                "{prefix}: dedupe = false with on_unknown = \"resend\": after a timeout or a \
                 crash the receiver may get a second copy; set on_unknown = \"hold\" to let an \
                 operator decide"
            )),
            (false, OnUnknown::Resend) => res.push(format!(
                "{prefix}: a {} destination can neither drop a repeated request nor be searched, \
                 so with on_unknown = \"resend\" a timeout or a crash may leave a second copy; \
                 set on_unknown = \"hold\" to let an operator decide",
                self.connector.kind()
            )),
            (true, OnUnknown::Hold) => res.push(format!(
                "{prefix}: on_unknown = \"hold\" only applies to an ambiguous last attempt here, \
                 because the destination deduplicates and ambiguous attempts are resent safely; \
                 set dedupe = false if the receiver does not deduplicate"
            )),
            _ => {}
        }
        if self.settings.policy.max_attempts == 1 && !resolves {
            res.push(format!(
                "{prefix}: max_attempts = 1 leaves no attempt to resolve an ambiguous one; a \
                 timeout ends the delivery {}",
                match self.settings.policy.on_unknown {
                    OnUnknown::Hold => "held",
                    OnUnknown::Resend => "failed (ambiguous)",
                }
            ));
        }
        res
    }
}

impl DestinationConfig {
    /// The `kind` name (`webhook`).
    pub fn kind(&self) -> &'static str {
        self.connector.kind()
    }
}

/// Debug output never shows secrets, header values or URL paths (which often carry
/// tokens): each kind's settings redact themselves.
impl fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationConfig")
            .field("name", &self.name)
            .field("connector", &self.connector)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Every problem found in a configuration file; `Display` writes one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: `herald.toml:12:7` (1-based line and column), or just the file name for a
    /// problem with the file as a whole.
    pub location: String,
    /// The dotted key concerned (`destinations.ops-webhook.backoff_base`); empty for a
    /// syntax error or a problem with the file as a whole.
    pub key: String,
    /// What is wrong and what to do about it. Never contains a secret.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Names given as targets that are neither a destination nor a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTarget {
    /// The unknown names, in the order given, without repeats.
    pub unknown: Vec<String>,
    /// The configured destinations, in file order.
    pub destinations: Vec<String>,
    /// The configured groups, sorted.
    pub groups: Vec<String>,
}

impl fmt::Display for UnknownTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.unknown.len() == 1 {
            "unknown destination or group"
        } else {
            "unknown destinations or groups"
        };
        write!(f, "{what} {}", values::quoted_list(&self.unknown))?;
        if self.destinations.is_empty() {
            return write!(f, "; no destinations are configured");
        }
        write!(f, "; destinations: {}", self.destinations.join(", "))?;
        if !self.groups.is_empty() {
            write!(f, "; groups: {}", self.groups.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownTarget {}

impl Config {
    /// Reads and validates the file at `path`, resolving `${VAR}` secrets from the
    /// process environment. Locations in errors name the file as given.
    ///
    /// # Errors
    /// Every problem found, or one error saying why the file could not be read.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let message = if e.kind() == std::io::ErrorKind::NotFound {
                "configuration file not found; create it (an empty file runs with the \
                 defaults) or give the path of an existing one"
                    .to_owned()
            } else {
                format!("cannot read the configuration file: {e}")
            };
            ConfigErrors(vec![ConfigError {
                location: origin.clone(),
                key: String::new(),
                message,
            }])
        })?;
        Config::parse(&text, &origin, &|name| std::env::var(name).ok())
    }

    /// Validates `text`; `origin` is the file name used in error locations and `env`
    /// looks up the variables of `${VAR}` secrets. `file:` secrets are read from disk.
    ///
    /// # Errors
    /// Every problem found: all syntax errors if the text is not valid TOML, otherwise
    /// every semantic problem, ordered by position.
    pub fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        Config::parse_with(text, origin, env, herald_connectors::KINDS)
    }

    /// [`Config::parse`] with the destination kinds `kinds` instead of all of this
    /// build's (tests add kinds of their own).
    pub(crate) fn parse_with(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
        kinds: &[&'static herald_connectors::Kind],
    ) -> Result<Config, ConfigErrors> {
        build::parse(text, origin, env, kinds).map_err(|diags| {
            ConfigErrors(
                diags
                    .into_iter()
                    .map(|d| ConfigError {
                        location: build::location(text, origin, d.offset),
                        key: d.key,
                        message: d.message,
                    })
                    .collect(),
            )
        })
    }

    /// Expands groups in `names` into destination names, keeping the first-seen order
    /// and dropping repeats.
    ///
    /// # Errors
    /// [`UnknownTarget`] naming every entry that is neither a destination nor a group.
    pub fn resolve_targets(&self, names: &[String]) -> Result<Vec<String>, UnknownTarget> {
        let mut seen = HashSet::new();
        let mut resolved = Vec::new();
        let mut unknown: Vec<String> = Vec::new();
        for name in names {
            let expanded: &[String] = if self.destination(name).is_some() {
                std::slice::from_ref(name)
            } else if let Some(members) = self.groups.get(name) {
                members
            } else {
                if !unknown.contains(name) {
                    unknown.push(name.clone());
                }
                continue;
            };
            for destination in expanded {
                if seen.insert(destination.as_str()) {
                    resolved.push(destination.clone());
                }
            }
        }
        if unknown.is_empty() {
            Ok(resolved)
        } else {
            Err(UnknownTarget {
                unknown,
                destinations: self.destinations.iter().map(|d| d.name.clone()).collect(),
                groups: self.groups.keys().cloned().collect(),
            })
        }
    }

    /// The destination called `name`.
    pub fn destination(&self, name: &str) -> Option<&DestinationConfig> {
        self.destinations.iter().find(|d| d.name == name)
    }
}

/// Checks a `[[tokens]]` name (the rule of destination names), for `herald token create`.
pub(crate) fn check_token_name(name: &str) -> Result<(), String> {
    values::check_name(name)
}
