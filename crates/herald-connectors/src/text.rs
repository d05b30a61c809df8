//! Text helpers shared by connectors: cutting to a destination's limit with a visible marker.

use std::borrow::Cow;

/// Appended to text herald had to cut.
pub const TRUNCATION_MARKER: &str = "…(truncated by herald)";

/// `text` cut on a char boundary so that, with [`TRUNCATION_MARKER`] appended, it is at
/// most `max_chars` chars; `text` itself when it fits.
pub fn cut(text: &str, max_chars: usize) -> Cow<'_, str> {
    if text.chars().count() <= max_chars {
        return Cow::Borrowed(text);
    }
    let keep = max_chars.saturating_sub(TRUNCATION_MARKER.chars().count());
    let mut res: String = text.chars().take(keep).collect();
    res.push_str(TRUNCATION_MARKER);
    Cow::Owned(res)
}
