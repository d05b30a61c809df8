//! API tokens: what a token may do ([`Scope`]), how it is stored ([`TokenHash`], never
//! the token itself), how a new one is made ([`new_token`]) and how a presented one is
//! recognised ([`ApiToken::find`]). Nothing here reads configuration or HTTP; the
//! configuration parser and the auth layer both build on it.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every token herald makes starts with this, so a token pasted where its hash belongs
/// (or found in a log or a repository by a secret scanner) is recognisable.
pub const TOKEN_PREFIX: &str = "hrld_";

/// The random bytes in a token: 256 bits, far beyond guessing.
const TOKEN_BYTES: usize = 32;

/// How a stored hash is written: `sha256:` and 64 hexadecimal digits.
const HASH_PREFIX: &str = "sha256:";

/// What a token allows. `Admin` allows everything the others do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Submit broadcasts and post updates.
    Send,
    /// Read broadcasts, attempts, events, destinations, nodes and metrics.
    Read,
    /// Retry and cancel deliveries, pause and resume destinations.
    Operate,
    /// All of the above.
    Admin,
}

impl Scope {
    /// Every scope, in the order the documentation lists them.
    pub const ALL: [Scope; 4] = [Scope::Send, Scope::Read, Scope::Operate, Scope::Admin];

    /// The name used in `herald.toml`, the OpenAPI document and problems.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    /// The scope called `name`, if any.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.name() == name)
    }

    /// The names of every scope, for messages: `send, read, operate, admin`.
    pub fn names() -> String {
        Scope::ALL.map(Scope::name).join(", ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The SHA-256 of a token: what `herald.toml` stores instead of the token. A plain hash
/// (no salt, no slow key derivation) is enough because tokens are 256 random bits, not
/// passwords: there is no dictionary to try.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token` as presented by a client.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Reads `sha256:<64 hex digits>`.
    ///
    /// # Errors
    /// What is wrong with `text`, in words for the person editing `herald.toml`. The
    /// message never repeats `text`: it may be a token pasted by mistake.
    pub fn parse(text: &str) -> Result<TokenHash, String> {
        const HINT: &str = "write the `hash` line that `herald token create` printed, \
                            e.g. hash = \"sha256:9f86d081884c7d65...\" (64 hexadecimal digits)";
        if text.starts_with(TOKEN_PREFIX) {
            return Err(format!(
                "this is a token itself (it starts with `{TOKEN_PREFIX}`), not its hash; herald \
                 must never store the token. Consider it exposed: create a new one with `herald \
                 token create` and write only its hash here"
            ));
        }
        let Some(hex) = text.strip_prefix(HASH_PREFIX) else {
            return Err(format!("a token hash starts with `{HASH_PREFIX}`; {HINT}"));
        };
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "a token hash has only hexadecimal digits after `{HASH_PREFIX}`; {HINT}"
            ));
        }
        if hex.len() != 64 {
            return Err(format!(
                "a token hash has 64 hexadecimal digits after `{HASH_PREFIX}`, this one has {}; \
                 {HINT}",
                hex.len()
            ));
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            // Two ASCII hexadecimal digits, checked above.
            let digits = std::str::from_utf8(pair).unwrap_or_default();
            *byte = u8::from_str_radix(digits, 16).unwrap_or_default();
        }
        Ok(TokenHash(bytes))
    }

    /// Whether `self` and `other` are equal, in time that does not depend on where they
    /// differ, so response times reveal nothing about a stored hash.
    fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HASH_PREFIX)?;
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// A hash is not a secret (a token cannot be recovered from it), so it shows in full.
impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({self})")
    }
}

/// One `[[tokens]]` entry: a named token, by its hash, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Who holds it (`alertmanager`), for messages.
    pub name: String,
    /// The hash of the token.
    pub hash: TokenHash,
    /// What it allows; never empty.
    pub scopes: Vec<Scope>,
}

impl ApiToken {
    /// Whether this token allows what `scope` allows.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|have| *have == scope || *have == Scope::Admin)
    }

    /// The entry among `tokens` whose hash is the presented token's. Every comparison
    /// takes the same time whatever the bytes; only the position of a match could show,
    /// and that tells nothing about any token.
    pub fn find<'t>(tokens: &'t [ApiToken], presented: &str) -> Option<&'t ApiToken> {
        let hash = TokenHash::of(presented);
        tokens.iter().find(|token| token.hash.matches(&hash))
    }
}

/// A new token: [`TOKEN_PREFIX`] and 32 bytes from the operating system's random
/// source, base64url without padding (`hrld_` + 43 characters).
///
/// # Errors
/// When the operating system's random source cannot be read.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

#[cfg(test)]
mod tests;
