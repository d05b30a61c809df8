//! `docs/runbook.md`, embedded and rendered to one HTML page at `/ui/runbook`, so the
//! dashboard's "Runbook: …" links open the section that explains an error on the
//! server the operator is already looking at, with no copy of the docs to keep in step.

use std::sync::LazyLock;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd, html};

/// The runbook's Markdown, as checked in.
const SOURCE: &str = include_str!("../../../../docs/runbook.md");

/// The rendered page, built once on first request.
pub(super) static PAGE: LazyLock<String> = LazyLock::new(|| page(SOURCE));

/// The anchor GitHub gives a heading, which the alert rules and the dashboard link to:
/// lower case, spaces to `-`, everything but letters, digits, `-` and `_` dropped.
pub(super) fn slug(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// `markdown` as a complete HTML page in the dashboard's style, each heading carrying
/// its slug as `id`. Raw HTML in the source is escaped: the page runs under the
/// dashboard's CSP and nothing in it needs markup Markdown cannot write.
fn page(markdown: &str) -> String {
    let events: Vec<Event<'_>> = Parser::new_ext(markdown, Options::ENABLE_TABLES).collect();
    let mut out: Vec<Event<'_>> = Vec::with_capacity(events.len());
    let mut index = 0;
    while index < events.len() {
        match &events[index] {
            Event::Start(Tag::Heading { level, .. }) => {
                let level = *level;
                let end = events[index..]
                    .iter()
                    .position(|e| matches!(e, Event::End(TagEnd::Heading(_))))
                    .map_or(events.len(), |offset| index + offset);
                let text: String = events[index + 1..end]
                    .iter()
                    .filter_map(|e| match e {
                        Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                        _ => None,
                    })
                    .collect();
                let mut inner = String::new();
                html::push_html(&mut inner, events[index + 1..end].iter().cloned());
                // `HeadingLevel`'s discriminants are the levels (H1 = 1 ... H6 = 6).
                let n = level as u8;
                out.push(Event::Html(
                    format!("<h{n} id=\"{}\">{inner}</h{n}>\n", slug(&text)).into(),
                ));
                index = end + 1;
            }
            Event::Html(raw) | Event::InlineHtml(raw) => {
                out.push(Event::Text(raw.clone()));
                index += 1;
            }
            other => {
                out.push(other.clone());
                index += 1;
            }
        }
    }
    let mut body = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut body, out.into_iter());
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>herald runbook</title>\n<link rel=\"icon\" href=\"favicon.svg\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"app.css\">\n</head>\n<body>\n\
         <header class=\"top\"><a class=\"brand\" href=\"./\">herald</a></header>\n\
         <main class=\"runbook\">\n{body}</main>\n</body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_get_the_anchors_the_alerts_and_the_dashboard_link_to() {
        let page = page(SOURCE);
        // Every anchor a shipped alert rule links to, and those the dashboard builds from
        // failure reasons (`attempts_exhausted` → `attempts-exhausted`).
        let rules = include_str!("../../../../ops/prometheus/alerts.yml");
        let mut linked: Vec<String> = rules
            .lines()
            .filter_map(|line| {
                line.split_once("runbook.md#").map(|(_, a)| a.trim_matches('"').to_owned())
            })
            .collect();
        assert!(!linked.is_empty(), "the alert rules link no runbook section");
        use herald_core::delivery::FailReason;
        let reasons = [
            FailReason::Permanent,
            FailReason::AttemptsExhausted,
            FailReason::Expired,
            FailReason::PredecessorFailed,
            FailReason::Ambiguous,
        ];
        for reason in &reasons {
            // A new reason fails to compile here until it is listed above (and written up).
            match reason {
                FailReason::Permanent
                | FailReason::AttemptsExhausted
                | FailReason::Expired
                | FailReason::PredecessorFailed
                | FailReason::Ambiguous => linked.push(reason.as_str().replace('_', "-")),
            }
        }
        linked.push("held".to_owned());
        for anchor in linked {
            assert!(page.contains(&format!(" id=\"{anchor}\">")), "no heading with id {anchor:?}");
        }
    }

    #[test]
    fn slugs_follow_github() {
        assert_eq!(slug("Oldest pending too old"), "oldest-pending-too-old");
        assert_eq!(slug("In flight"), "in-flight");
        assert_eq!(slug("`herald status` (CLI)"), "herald-status-cli");
    }

    #[test]
    fn raw_html_in_the_source_is_shown_as_text() {
        let page = page("# T\n\n<script>alert(1)</script>\n\ntext <b>x</b>\n");
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<b>x"), "{page}");
        assert!(page.contains("<h1 id=\"t\">T</h1>"), "{page}");
    }
}
