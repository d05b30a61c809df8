//! `[[tokens]]`: the API tokens, each by its hash with a name and scopes, and the rule
//! that an API reachable from other machines must have some.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use herald_api::{ApiToken, Scope, TokenHash};
use herald_connectors::settings;
use toml::de::{DeTable, DeValue};

use super::{Checker, Value, in_file_order};
use crate::config::values;

/// The settings of one `[[tokens]]` entry.
const TOKEN_KEYS: &[&str] = &["name", "hash", "scopes"];

/// How an entry looks, for messages.
const EXAMPLE: &str = "[[tokens]] with name = \"alertmanager\", hash = \"sha256:...\" and \
                       scopes = [\"send\"], as `herald token create` prints it";

/// What has been seen so far, to report repeated names and hashes at the repeat.
#[derive(Default)]
struct Seen {
    names: HashMap<String, ()>,
    hashes: HashMap<TokenHash, String>,
}

impl Checker<'_> {
    /// The `tokens` array of tables.
    pub(super) fn tokens(&mut self, value: &Value<'_>) -> Vec<ApiToken> {
        let DeValue::Array(entries) = value.get_ref() else {
            let found = value.get_ref().type_str();
            self.error(
                value.span().start,
                "tokens",
                format!("expected one {EXAMPLE} per token, found {found}"),
            );
            return Vec::new();
        };
        let mut seen = Seen::default();
        let mut res = Vec::new();
        for (idx, entry) in entries.iter().enumerate() {
            let path = format!("tokens[{idx}]");
            let Some(table) = self.table(entry, &path, &format!("a {EXAMPLE}")) else {
                continue;
            };
            if let Some(token) = self.token(table, entry.span().start, &path, &mut seen) {
                res.push(token);
            }
        }
        res
    }

    /// One entry; `None` (reported) unless it is complete and valid.
    fn token(
        &mut self,
        table: &DeTable<'_>,
        header: usize,
        path: &str,
        seen: &mut Seen,
    ) -> Option<ApiToken> {
        let before = self.diags.len();
        let (mut name, mut hash, mut scopes) = (None, None, None);
        for (key, value) in in_file_order(table) {
            let setting = key.get_ref().as_ref();
            let key_path = format!("{path}.{setting}");
            let at = value.span().start;
            match setting {
                "name" => name = self.token_name(value, &key_path, seen),
                "hash" => {
                    let Some(text) = self.string(value, &key_path) else { continue };
                    match TokenHash::parse(text) {
                        Ok(parsed) => {
                            if let Some(first) = seen.hashes.get(&parsed) {
                                let message = format!(
                                    "the same token as the [[tokens]] entry `{first}`; list each \
                                     token once (create another with `herald token create` if \
                                     both entries are meant)"
                                );
                                self.error(at, &key_path, message);
                            }
                            hash = Some(parsed);
                        }
                        Err(message) => self.error(at, &key_path, message),
                    }
                }
                "scopes" => scopes = self.scopes(value, &key_path),
                _ => {
                    let message = match settings::closest(setting, TOKEN_KEYS) {
                        Some(close) => {
                            format!("unknown setting `{setting}`; did you mean `{close}`?")
                        }
                        None => format!(
                            "unknown setting `{setting}` in [[tokens]]; valid settings: {}",
                            TOKEN_KEYS.join(", ")
                        ),
                    };
                    self.error(key.span().start, &key_path, message);
                }
            }
        }
        for (missing, key, example) in [
            (name.is_none(), "name", "name = \"alertmanager\" (who holds the token)"),
            (hash.is_none(), "hash", "hash = \"sha256:...\" (from `herald token create`)"),
            (scopes.is_none(), "scopes", "scopes = [\"send\"] (of send, read, operate, admin)"),
        ] {
            let key_path = format!("{path}.{key}");
            // A key that was written but invalid has been reported already.
            if missing && !self.diags[before..].iter().any(|d| d.key == key_path) {
                self.error(header, &key_path, format!("missing `{key}`; add {example}"));
            }
        }
        let (name, hash, scopes) = (name?, hash?, scopes?);
        if self.diags.len() > before {
            return None;
        }
        seen.hashes.insert(hash, name.clone());
        Some(ApiToken { name, hash, scopes })
    }

    fn token_name(&mut self, value: &Value<'_>, path: &str, seen: &mut Seen) -> Option<String> {
        let text = self.string(value, path)?;
        let at = value.span().start;
        if let Err(message) = values::check_name(text) {
            self.error(at, path, message);
            return None;
        }
        if seen.names.insert(text.to_owned(), ()).is_some() {
            let message = format!(
                "another [[tokens]] entry is also named `{text}`; give each token its own name \
                 (403 answers name the token)"
            );
            self.error(at, path, message);
            return None;
        }
        Some(text.to_owned())
    }

    fn scopes(&mut self, value: &Value<'_>, path: &str) -> Option<Vec<Scope>> {
        let DeValue::Array(items) = value.get_ref() else {
            let found = value.get_ref().type_str();
            let message = format!(
                "expected a list of scopes, e.g. [\"send\"], found {found}; scopes: {}",
                Scope::names()
            );
            self.error(value.span().start, path, message);
            return None;
        };
        if items.is_empty() {
            let message = format!(
                "a token without scopes can do nothing; list what it may do: {} (admin is all)",
                Scope::names()
            );
            self.error(value.span().start, path, message);
            return None;
        }
        let mut res = Vec::new();
        for item in items.iter() {
            let Some(text) = self.string(item, path) else { continue };
            let Some(scope) = Scope::parse(text) else {
                let names = Scope::ALL.map(Scope::name);
                let hint = match settings::closest(text, &names) {
                    Some(close) => format!("did you mean \"{close}\"? "),
                    None => String::new(),
                };
                let message = format!("unknown scope {text:?}; {hint}scopes: {}", Scope::names());
                self.error(item.span().start, path, message);
                continue;
            };
            if !res.contains(&scope) {
                res.push(scope);
            }
        }
        Some(res)
    }

    /// Refuses a listen address other machines can reach when no token is configured:
    /// the API would let anyone send, cancel and pause. Not reported when `[[tokens]]`
    /// is written but broken: its own problems say what to fix.
    pub(super) fn exposure(&mut self, root: &DeTable<'_>, listen: SocketAddr, has_tokens: bool) {
        if has_tokens || is_loopback(listen.ip()) {
            return;
        }
        let written =
            in_file_order(root).into_iter().any(|(key, _)| key.get_ref().as_ref() == "tokens");
        if written {
            return;
        }
        let at = in_file_order(root)
            .into_iter()
            .find(|(key, _)| key.get_ref().as_ref() == "server")
            .and_then(|(_, server)| match server.get_ref() {
                DeValue::Table(table) => in_file_order(table)
                    .into_iter()
                    .find(|(key, _)| key.get_ref().as_ref() == "listen")
                    .map(|(_, value)| value.span().start),
                _ => None,
            })
            .unwrap_or_default();
        self.error(
            at,
            "server.listen",
            format!(
                "{listen} can be reached from other machines, but no [[tokens]] are configured, so \
                 anyone who reaches it could send, cancel, retry and pause; herald refuses to \
                 start like this. Create a token with `herald token create --name NAME --scope \
                 admin` and add the [[tokens]] entry it prints, or listen on a loopback address \
                 (127.0.0.1:{})",
                listen.port()
            ),
        );
    }
}

/// Whether only this machine can reach `ip` (`127.0.0.0/8`, `::1`, and `::ffff:127.x`).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests;
