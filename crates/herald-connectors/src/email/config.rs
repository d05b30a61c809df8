//! An `email` destination's settings: the SMTP server URL, the TLS mode, optional
//! credentials (the password is a secret: never in `Debug`, errors or logs), the sender
//! and the recipients.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use lettre::message::Mailbox;

use crate::settings::Table;
use crate::{Connector, ConnectorConfig, ConnectorError, KindSettings};

/// The kind's own keys (besides the common policy keys).
pub(super) const KEYS: &[&str] = &["smtp", "tls", "username", "password", "from", "to"];

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// `smtps://`: TLS from the first byte; `smtp://`: STARTTLS, refused if not offered.
    Required,
    /// `smtp://` only: STARTTLS when the server offers it, plain text otherwise.
    Opportunistic,
    /// Never encrypt: only for a server on this machine (loopback).
    None,
}

/// An `email` destination's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// The server's host name (also the name its certificate must carry).
    pub host: String,
    /// The server's port (default 587 for `smtp://`, 465 for `smtps://`).
    pub port: u16,
    /// `smtps://`: TLS from the first byte instead of STARTTLS.
    pub implicit_tls: bool,
    /// The TLS mode.
    pub tls: Tls,
    /// The login name, if the server wants one.
    pub username: Option<String>,
    /// The password; never shown.
    pub password: Option<String>,
    /// The sender (`herald <herald@example.com>`).
    pub from: Mailbox,
    /// Every recipient, in configuration order.
    pub to: Vec<Mailbox>,
}

impl EmailConfig {
    /// Settings for a plain-text server on loopback (tests): `tls = "none"`, no login.
    pub fn loopback(port: u16, from: Mailbox, to: Vec<Mailbox>) -> EmailConfig {
        EmailConfig {
            host: "127.0.0.1".to_owned(),
            port,
            implicit_tls: false,
            tls: Tls::None,
            username: None,
            password: None,
            from,
            to,
        }
    }

    /// The domain of the sender's address, the right-hand side of every Message-ID.
    pub fn from_domain(&self) -> &str {
        self.from.email.domain()
    }

    /// Problems that make the settings unusable: the key and what is wrong with it.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.tls == Tls::None && !is_loopback(&self.host) {
            problems.push((
                "tls",
                format!(
                    "`tls = \"none\"` sends the message{} in clear text; it is only allowed for a \
                 server on this machine (127.0.0.1, ::1, localhost), not {}",
                    if self.password.is_some() { " and the password" } else { "" },
                    self.host
                ),
            ));
        }
        if self.implicit_tls && self.tls != Tls::Required {
            problems.push((
                "tls",
                "`smtps://` always uses TLS; drop `tls` or write smtp:// for STARTTLS".to_owned(),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            let why = "`username` and `password` go together: give both or neither";
            problems.push(("username", why.to_owned()));
        }
        if self.to.is_empty() {
            problems.push(("to", "`to` names no recipient".to_owned()));
        }
        problems
    }
}

/// Whether `host` is this machine, where clear text never leaves it.
pub(super) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("implicit_tls", &self.implicit_tls)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from.to_string())
            .field("to", &self.to.iter().map(ToString::to_string).collect::<Vec<_>>())
            .finish()
    }
}

/// `smtp://host[:port]` or `smtps://host[:port]`: host, port, implicit TLS.
pub(super) fn parse_server(text: &str) -> Result<(String, u16, bool), String> {
    let hint = "write e.g. \"smtp://mail.example.com:587\" (STARTTLS) or \
                \"smtps://mail.example.com:465\" (implicit TLS)";
    let url =
        reqwest::Url::parse(text.trim()).map_err(|e| format!("not a valid URL ({e}); {hint}"))?;
    let implicit_tls = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => {
            return Err(format!("the scheme must be smtp:// or smtps://, not {other}://; {hint}"));
        }
    };
    let host = match url.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']')) {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => return Err(format!("the URL has no host; {hint}")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put the login in `username` and `password`, not in the URL".to_owned());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("the URL takes only a host and a port; {hint}"));
    }
    Ok((host, url.port().unwrap_or(if implicit_tls { 465 } else { 587 }), implicit_tls))
}

/// Reads a `[destinations.x]` table of kind `email`.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let server = table
        .required_string("smtp", "e.g. smtp = \"smtp://mail.example.com:587\"")
        .and_then(|text| match parse_server(&text) {
            Ok(server) => Some(server),
            Err(problem) => {
                table.problem("smtp", problem);
                None
            }
        });
    let tls = match table.choice("tls", &["required", "opportunistic", "none"]) {
        Some("opportunistic") => Tls::Opportunistic,
        Some("none") => Tls::None,
        _ => Tls::Required,
    };
    let username = table.string("username");
    let password = table.secret("password");
    let from = table
        .required_string("from", "e.g. from = \"herald <herald@example.com>\"")
        .and_then(|text| mailbox(table, "from", &text, None));
    let mut to = Vec::new();
    if table.require("to", "e.g. to = [\"oncall@example.com\"]")
        && let Some(list) = table.string_list("to")
    {
        for (text, at) in list {
            if let Some(address) = mailbox(table, "to", &text, Some(at)) {
                to.push(address);
            }
        }
    }
    let (Some((host, port, implicit_tls)), Some(from)) = (server, from) else {
        return None;
    };
    let config = EmailConfig { host, port, implicit_tls, tls, username, password, from, to };
    for (key, problem) in config.problems() {
        table.problem(key, problem);
    }
    table.ok().then(|| ConnectorConfig::new(config))
}

fn mailbox(table: &mut Table<'_>, key: &str, text: &str, at: Option<usize>) -> Option<Mailbox> {
    match text.trim().parse::<Mailbox>() {
        Ok(mailbox) => Some(mailbox),
        Err(error) => {
            let message = format!(
                "{text:?} is not an e-mail address ({error}); write \"name@example.com\" or \
                 \"Name <name@example.com>\""
            );
            match at {
                Some(at) => table.problem_at(at, key, message),
                None => table.problem(key, message),
            }
            None
        }
    }
}

impl KindSettings for EmailConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, _client: reqwest::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::Email::new(self.clone())?))
    }

    fn capabilities(&self) -> herald_core::Capabilities {
        super::CAPABILITIES
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
