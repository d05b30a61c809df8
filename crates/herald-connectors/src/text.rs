//! Text the renderers share: cutting to a destination's documented limit, visibly (a
//! reader must see that herald shortened the message, never receive a silently clipped
//! one; fields and links too long on their own are left out saying so), and instants as
//! RFC 3339.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use herald_core::{Message, Timestamp};

/// The last millisecond RFC 3339 can express: the end of the year 9999.
const LAST_RFC3339_MILLIS: i64 = 253_402_300_800_000 - 1;

/// `at` as RFC 3339 in UTC with milliseconds (`2026-11-29T12:02:03.000Z`); `None` before
/// 1970 or after 9999, which RFC 3339 cannot say.
pub fn rfc3339_millis(at: Timestamp) -> Option<String> {
    let millis = at.as_millis();
    if !(0..=LAST_RFC3339_MILLIS).contains(&millis) {
        return None;
    }
    let instant = UNIX_EPOCH.checked_add(Duration::from_millis(u64::try_from(millis).ok()?))?;
    Some(humantime::format_rfc3339_millis(instant).to_string())
}

/// Parses an RFC 3339 UTC instant (`2026-12-02T22:15:04.123Z`, any fraction).
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let since_epoch = humantime::parse_rfc3339(text).ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(Timestamp::from_millis(i64::try_from(since_epoch.as_millis()).ok()?))
}

/// Appended to text herald shortened to fit a destination's limit.
pub const TRUNCATION_MARKER: &str = "…(truncated by herald)";

/// `message` without its fields and links, its body led by a line saying how many were
/// left out: for a destination whose size limit they alone exceed, so that the rest of
/// the message (and the marker a retry looks for) is still sent.
pub fn without_fields_and_links(message: &Message, destination: &str) -> Message {
    let note = format!(
        "{TRUNCATION_MARKER}: the message's {} field(s) and {} link(s) are too long for \
         {destination}.",
        message.fields.len(),
        message.links.len()
    );
    Message {
        body: format!("{note}\n\n{}", message.body),
        fields: BTreeMap::new(),
        links: Vec::new(),
        ..message.clone()
    }
}

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
    fn instants_round_trip_through_rfc3339() {
        let at = Timestamp::from_millis(951_827_696_789);
        assert_eq!(rfc3339_millis(at).as_deref(), Some("2000-02-29T12:34:56.789Z"));
        assert_eq!(parse_rfc3339("2000-02-29T12:34:56.789Z"), Some(at));
        assert_eq!(parse_rfc3339("2000-02-29T12:34:56.7890000Z"), Some(at), "Graph's 7 digits");
        assert_eq!(rfc3339_millis(Timestamp::from_millis(-1)), None);
        assert_eq!(rfc3339_millis(Timestamp::from_millis(LAST_RFC3339_MILLIS + 1)), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn trailing_space_before_the_marker_is_dropped() {
        let text = format!("{} {}", "a".repeat(10), "b".repeat(40));
        assert_eq!(cut(&text, 33), format!("{}{TRUNCATION_MARKER}", "a".repeat(10)));
    }
}
