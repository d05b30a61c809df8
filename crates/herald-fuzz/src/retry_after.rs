//! The `retry_after` target: `http::parse_retry_after` and the header reader around it.
//!
//! Input: a mode byte, four bytes of `now` (seconds after the fixed fuzz instant), then
//! the value. Mode odd: the value is made an HTTP-date, the next eight bytes giving its
//! seconds since 1970, so the date path is reached as often as the number path.
//! Properties: never more than `RETRY_AFTER_CAP`; delay-seconds (with the documented
//! leniencies: a fraction rounds up, a negative number is zero) and dates give exactly
//! the documented wait; the header reader agrees with the parser on every header it
//! reads.

use std::time::{Duration, UNIX_EPOCH};

use herald_connectors::http::{self, RETRY_AFTER_CAP};
use herald_core::Timestamp;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

use crate::input::Input;
use crate::message::NOW;

/// Parses one value and checks its properties.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let now = Timestamp::from_millis(NOW.as_millis() + i64::from(input.u32()) * 1000);
    let (value, expected) = if mode % 2 == 1 {
        let secs = u64::from(input.u32()) << 32 | u64::from(input.u32());
        // httpdate writes years up to 9999 only.
        let secs = secs % 253_402_300_800;
        let date = UNIX_EPOCH + Duration::from_secs(secs);
        let wait =
            Timestamp::from_millis(i64::try_from(secs * 1000).unwrap_or(i64::MAX)).since(now);
        (httpdate::fmt_http_date(date), Some(wait.min(RETRY_AFTER_CAP)))
    } else {
        let value = String::from_utf8_lossy(input.rest()).into_owned();
        let expected = delay_seconds(value.trim());
        (value, expected)
    };
    let parsed = http::parse_retry_after(&value, now);
    if let Some(wait) = parsed {
        assert!(wait <= RETRY_AFTER_CAP, "Retry-After {value:?} gave {wait:?}, beyond the cap");
    }
    if expected.is_some() {
        assert_eq!(parsed, expected, "Retry-After {value:?}");
    }
    // A header that is not visible ASCII is ignored (`to_str` refuses it), whatever the
    // parser would make of the text.
    if let Some(header) = HeaderValue::from_str(&value).ok().filter(|h| h.to_str().is_ok()) {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, header);
        assert_eq!(http::retry_after(&headers, now), parsed, "the header reader for {value:?}");
    }
}

/// The documented reading of delay-seconds: digits, optionally a `.` and more digits
/// (rounded up to the next second), optionally a leading `-` (zero); `None` for
/// anything else (which may still be a date).
fn delay_seconds(value: &str) -> Option<Duration> {
    let (negative, number) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || number.ends_with('.') {
        return None;
    }
    if negative {
        return Some(Duration::ZERO);
    }
    let whole_secs: u128 =
        whole.bytes().fold(0, |n, b| (n * 10 + u128::from(b - b'0')).min(u128::from(u64::MAX)));
    let secs = whole_secs + u128::from(fraction.bytes().any(|b| b != b'0'));
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX)).min(RETRY_AFTER_CAP))
}
