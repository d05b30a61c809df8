//! Secret references: `${ENV_VAR}`, `file:/path` or an inline value.
//!
//! Every message produced here names where the secret comes from (variable, file) but
//! never contains the secret itself, nor the raw configured text (which may be an
//! inline secret).

use std::io::Read;

/// Secret files larger than this are refused: they hold something else.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Resolves a secret reference to its value; `env` looks up environment variables.
///
/// # Errors
/// Why the reference cannot be resolved, naming the variable or file, never the value.
pub fn resolve(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if let Some(rest) = raw.strip_prefix("${") {
        let Some(name) = rest.strip_suffix('}').filter(|n| is_env_name(n)) else {
            return Err("malformed environment reference; write it as \"${VAR_NAME}\" \
                        (letters, digits and `_`)"
                .to_owned());
        };
        return match env(name) {
            None => Err(format!(
                "environment variable `{name}` is not set; export it before starting herald \
                 or reference a file with \"file:/path\""
            )),
            Some(value) if value.trim().is_empty() => {
                Err(format!("environment variable `{name}` is set but empty"))
            }
            Some(value) => Ok(value.trim().to_owned()),
        };
    }
    if let Some(rest) = raw.strip_prefix("file:") {
        let path = file_path(rest);
        if path.is_empty() {
            return Err("`file:` reference names no file; write \"file:/run/secrets/NAME\"".into());
        }
        return read_file(path);
    }
    Ok(raw.to_owned())
}

/// The path of a `file:` reference: `file:/path`, or `file:///path` as in a URL.
fn file_path(rest: &str) -> &str {
    if rest.starts_with("///") { &rest[2..] } else { rest }
}

/// Reads a secret file, trimming surrounding whitespace (the usual trailing newline).
fn read_file(path: &str) -> Result<String, String> {
    let unreadable = |e: std::io::Error| format!("cannot read secret file `{path}`: {e}");
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut contents = String::new();
    file.take(MAX_SECRET_FILE + 1).read_to_string(&mut contents).map_err(unreadable)?;
    if contents.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "secret file `{path}` is larger than {} KiB; it should hold only the secret",
            MAX_SECRET_FILE / 1024
        ));
    }
    let secret = contents.trim();
    if secret.is_empty() {
        return Err(format!("secret file `{path}` is empty"));
    }
    Ok(secret.to_owned())
}

/// Whether `raw` is the secret itself rather than a reference to where it is kept.
pub fn is_inline(raw: &str) -> bool {
    !raw.starts_with("${") && !raw.starts_with("file:")
}

/// Describes where a secret came from, for messages about its value.
pub fn source(raw: &str) -> String {
    if let Some(name) = raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        format!("the value of environment variable `{name}`")
    } else if let Some(rest) = raw.strip_prefix("file:") {
        format!("the contents of `{}`", file_path(rest))
    } else {
        "the inline secret".to_owned()
    }
}

/// `VAR_NAME`: letters, digits and `_`, not starting with a digit.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
