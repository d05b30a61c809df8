//! `herald token create`: a new API token, shown once, and the `[[tokens]]` entry that
//! lists it by its hash. Nothing is written anywhere: the operator pastes the entry
//! into `herald.toml` and hands the token to the client.

use anyhow::Context;
use herald_api::{Scope, TokenHash, new_token};

use crate::client::TOKEN_VAR;
use crate::config;

/// A new token for `name` with `scopes`.
#[derive(Debug)]
pub struct Created {
    /// The token itself, for the client.
    pub token: String,
    /// The `[[tokens]]` entry for the server's `herald.toml`.
    pub entry: String,
}

impl Created {
    /// What `herald token create` prints: the token on a line of its own, then the
    /// entry, each with what to do with it.
    pub fn text(&self, name: &str) -> String {
        format!(
            "New token for `{name}`; it is shown only now, herald keeps only its hash:\n\n\
             {token}\n\n\
             Add this entry to the server's herald.toml and restart herald:\n\n\
             {entry}\n\
             Clients send it as `Authorization: Bearer <token>`; the herald command reads it \
             from {TOKEN_VAR} or from a file named by --token-file.\n",
            token = self.token,
            entry = self.entry,
        )
    }
}

/// Makes a token for `name` with `scopes` (repeats dropped).
///
/// # Errors
/// When `name` is not a valid name, `scopes` is empty, or the operating system's random
/// source cannot be read.
pub fn create(name: &str, scopes: &[Scope]) -> anyhow::Result<Created> {
    config::check_token_name(name).map_err(|message| anyhow::anyhow!("--name: {message}"))?;
    let mut unique: Vec<Scope> = Vec::new();
    for scope in scopes {
        if !unique.contains(scope) {
            unique.push(*scope);
        }
    }
    if unique.is_empty() {
        anyhow::bail!("give the token at least one --scope: {}", Scope::names());
    }
    let token = new_token().context("cannot read the operating system's random source")?;
    let scopes: Vec<String> = unique.iter().map(|scope| format!("\"{scope}\"")).collect();
    let entry = format!(
        "[[tokens]]\nname = \"{name}\"\nhash = \"{}\"\nscopes = [{}]\n",
        TokenHash::of(&token),
        scopes.join(", ")
    );
    Ok(Created { token, entry })
}

/// Reads a `--scope` value.
///
/// # Errors
/// When `text` names no scope; the message lists them.
pub fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text).ok_or_else(|| format!("unknown scope {text:?}; scopes: {}", Scope::names()))
}

#[cfg(test)]
mod tests;
