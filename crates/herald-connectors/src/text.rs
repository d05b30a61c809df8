//! Cutting text to a destination's documented limit, visibly: a reader must see that
//! herald shortened the message, never receive a silently clipped one.

use std::borrow::Cow;

/// Appended to text herald shortened to fit a destination's limit.
pub const TRUNCATION_MARKER: &str = "…(truncated by herald)";

/// `text` if it has at most `max_chars` characters; otherwise its start, cut on a
/// character boundary, followed by [`TRUNCATION_MARKER`], `max_chars` characters in all
/// (only the marker's own start if `max_chars` is shorter than the marker).
pub fn cut(text: &str, max_chars: usize) -> Cow<'_, str> {
    if text.chars().count() <= max_chars {
        return Cow::Borrowed(text);
    }
    let marker_chars = TRUNCATION_MARKER.chars().count();
    if max_chars <= marker_chars {
        return Cow::Owned(TRUNCATION_MARKER.chars().take(max_chars).collect());
    }
    let keep = max_chars - marker_chars;
    let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    Cow::Owned(format!("{}{TRUNCATION_MARKER}", text[..end].trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_untouched() {
        assert!(matches!(cut("hello", 5), Cow::Borrowed("hello")));
        assert_eq!(cut("", 0), "");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_the_marker() {
        let text = "é".repeat(100) + "🚨🚨🚨";
        for max in [0, 3, 22, 23, 24, 50, 102] {
            let res = cut(&text, max);
            assert!(res.chars().count() <= max, "{max}: {res}");
            if max > TRUNCATION_MARKER.chars().count() {
                assert!(res.ends_with(TRUNCATION_MARKER), "{max}: {res}");
                assert!(res.starts_with('é'));
            }
        }
        assert_eq!(cut(&text, 103), text);
    }

    #[test]
    fn trailing_space_before_the_marker_is_dropped() {
        let text = format!("{} {}", "a".repeat(10), "b".repeat(40));
        assert_eq!(cut(&text, 33), format!("{}{TRUNCATION_MARKER}", "a".repeat(10)));
    }
}
