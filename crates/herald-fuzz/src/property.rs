//! Properties more than one target checks: JSON that survives a round trip, HTML made
//! only of the tags and link schemes a renderer may emit, Atlassian Document Format's
//! rules, Slack text that cannot ping anyone, and plain text on one line.
//!
//! Each check panics with what was wrong and the offending text: a panic is how a fuzz
//! target reports a failure (libFuzzer and the stable runner both catch it).

use serde_json::Value;

/// `value` serialized; it parses back to the same value.
pub fn json_text(value: &Value, what: &str) -> String {
    let text = value.to_string();
    let back: Value = match serde_json::from_str(&text) {
        Ok(back) => back,
        Err(error) => panic!("{what}: the serialized JSON does not parse ({error}): {text}"),
    };
    assert_eq!(&back, value, "{what}: the JSON does not survive a round trip");
    text
}

/// The string at `pointer` in `value`, or a failure naming it.
pub fn string_at<'v>(value: &'v Value, pointer: &str, what: &str) -> &'v str {
    match value.pointer(pointer).and_then(Value::as_str) {
        Some(text) => text,
        None => panic!("{what}: no string at {pointer} in {value}"),
    }
}

/// The number of characters of `text`.
pub fn chars(text: &str) -> usize {
    text.chars().count()
}

/// `text` has at most `max` characters and at least one.
pub fn within(text: &str, max: usize, what: &str) {
    let n = chars(text);
    assert!(n > 0, "{what} is empty");
    assert!(n <= max, "{what} has {n} characters; the limit is {max}: {text:?}");
}

/// `text` is one line.
pub fn one_line(text: &str, what: &str) {
    assert!(!text.contains(['\n', '\r']), "{what} is not one line: {text:?}");
}

/// Slack text cannot mention anyone: `<!here>`, `<!channel>`, `<@U…>`, `<#C…>` and
/// `<!subteam^…>` are markup only herald itself could write, and it writes none.
pub fn no_slack_mention(text: &str, what: &str) {
    for opener in ["<!", "<@", "<#"] {
        assert!(!text.contains(opener), "{what} holds Slack mention markup `{opener}`: {text:?}");
    }
}

/// A link target a renderer may emit: a web or mail address, or `#` (a dropped one).
fn safe_target(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    url == "#" || ["https://", "http://", "mailto:"].iter().any(|scheme| lower.starts_with(scheme))
}

/// Every tag of `html` is one of `tags` (`!DOCTYPE` aside), every attribute one of
/// `attributes`, and every `href`/`src` a web or mail address: raw HTML in a message is
/// shown as text, never interpreted.
pub fn html(html: &str, tags: &[&str], attributes: &[&str], what: &str) {
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let Some(end) = rest.find('>') else {
            panic!("{what}: a `<` that opens no tag: {html:?}");
        };
        let inside = &rest[..end];
        rest = &rest[end + 1..];
        if inside.starts_with("!DOCTYPE") {
            continue;
        }
        let name_end = inside.find([' ', '/']).filter(|&i| i > 0).unwrap_or(inside.len());
        let name = inside[..name_end].trim_start_matches('/');
        assert!(tags.contains(&name), "{what}: tag `<{inside}>` is not one herald emits: {html:?}");
        let mut attrs = inside[name_end..].trim().trim_end_matches('/').trim();
        while !attrs.is_empty() {
            let (attr, value, after) = match attrs.split_once('=') {
                Some((attr, after)) if after.starts_with('"') => {
                    let Some(close) = after[1..].find('"') else {
                        panic!("{what}: an unterminated attribute in `<{inside}>`");
                    };
                    (attr.trim(), Some(&after[1..=close]), &after[close + 2..])
                }
                _ => {
                    let (attr, after) = attrs.split_once(' ').unwrap_or((attrs, ""));
                    (attr, None, after)
                }
            };
            assert!(
                attributes.contains(&attr),
                "{what}: attribute `{attr}` in `<{inside}>` is not one herald emits"
            );
            if matches!(attr, "href" | "src") {
                let target = value.unwrap_or_default();
                assert!(safe_target(target), "{what}: link target {target:?} in `<{inside}>`");
            }
            attrs = after.trim();
        }
    }
}

/// ADF nodes herald emits, block and inline.
const ADF_NODES: &[&str] = &[
    "doc",
    "paragraph",
    "heading",
    "bulletList",
    "orderedList",
    "listItem",
    "blockquote",
    "codeBlock",
    "rule",
    "text",
    "hardBreak",
];

/// `node` follows the rules of Atlassian Document Format the Jira renderer documents:
/// known node types, text nodes never empty, a list item starting with a paragraph,
/// headings only at the top level, `code` marks combined with nothing but links.
pub fn adf(node: &Value, top_level: bool, what: &str) {
    let kind = node.get("type").and_then(Value::as_str).unwrap_or_default();
    assert!(ADF_NODES.contains(&kind), "{what}: ADF node type {kind:?} in {node}");
    if kind == "text" {
        let text = node.get("text").and_then(Value::as_str).unwrap_or_default();
        assert!(!text.is_empty(), "{what}: an empty ADF text node: {node}");
        let marks: Vec<&str> = node
            .get("marks")
            .and_then(Value::as_array)
            .map(|marks| marks.iter().filter_map(|m| m.get("type")?.as_str()).collect())
            .unwrap_or_default();
        if marks.contains(&"code") {
            assert!(
                marks.iter().all(|m| matches!(*m, "code" | "link")),
                "{what}: a code mark combined with {marks:?}: {node}"
            );
        }
    }
    if kind == "heading" {
        assert!(top_level, "{what}: a heading below the top level: {node}");
    }
    let children = node.get("content").and_then(Value::as_array);
    if kind == "listItem" {
        let first = children.and_then(|c| c.first()).and_then(|c| c.get("type"));
        assert!(
            first.and_then(Value::as_str) == Some("paragraph"),
            "{what}: a list item that does not start with a paragraph: {node}"
        );
    }
    for child in children.into_iter().flatten() {
        adf(child, kind == "doc", what);
    }
}
