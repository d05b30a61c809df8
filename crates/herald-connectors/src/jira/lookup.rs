//! Finding what an earlier attempt may have posted: an issue by its marker label (JQL
//! search, eventually consistent), a comment by its marker word (`GET` of the issue's
//! comments, strongly consistent).

use std::time::Duration;

use herald_core::{Outcome, Timestamp};
use serde_json::{Value, json};

use super::{Jira, render};
use crate::{Report, Request};

/// How soon herald searches again while a "not found" is not yet trusted: often enough
/// to settle soon after Jira's index catches up, rarely enough to cost little.
pub(super) const RECHECK: Duration = Duration::from_secs(5);

/// The most comments read per page (Jira's own page size for this resource).
const COMMENT_PAGE: usize = 5000;

/// The most comment pages read before giving up (an issue with more than this many
/// comments is not one herald keeps posting to).
const COMMENT_PAGES: usize = 20;

/// How long to wait before searching again, or `None` once a "not found" can be trusted:
/// `lookup_grace` after the ambiguous attempt. Never longer than the grace that is left,
/// never zero.
pub(super) fn wait_before_trusting(
    now: Timestamp,
    ambiguous_at: Timestamp,
    grace: Duration,
) -> Option<Duration> {
    let waited = now.since(ambiguous_at);
    let left = grace.checked_sub(waited).filter(|left| !left.is_zero())?;
    Some(left.min(RECHECK).max(Duration::from_millis(1)))
}

/// Whether `key` looks like a Jira issue key (`OPS-12`), safe to put in a URL path.
pub(super) fn is_issue_key(key: &str) -> bool {
    key.split_once('-').is_some_and(|(project, number)| {
        !project.is_empty()
            && project.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The key of the issue carrying the delivery's marker label, if the search sees one.
pub(super) async fn find_issue(
    jira: &Jira,
    request: &Request<'_>,
) -> Result<Option<String>, Box<Report>> {
    let jql = format!(
        "project = \"{}\" AND labels = \"{}\"",
        jira.config.project,
        render::marker(request.delivery_id)
    );
    let body = json!({"jql": jql, "fields": ["key"], "maxResults": 10});
    let found = jira
        .call(reqwest::Method::POST, "search/jql", Some(&body), request, "searching for the issue")
        .await?;
    // Only a list can say "none": an answer without one (an empty 2xx, another shape)
    // proves nothing and must not lead to a second create.
    let Some(issues) = found.get("issues").and_then(Value::as_array) else {
        return Err(unreadable("the search's answer has no list of issues"));
    };
    // More than one would be an earlier duplicate; the oldest (lowest id) is the original.
    let key = issues
        .iter()
        .filter_map(|issue| {
            let key = issue.get("key").and_then(Value::as_str)?;
            let id = issue.get("id").and_then(Value::as_str).and_then(|id| id.parse::<u64>().ok());
            Some((id.unwrap_or(u64::MAX), key.to_owned()))
        })
        .min()
        .map(|(_, key)| key);
    Ok(key)
}

/// The id of the comment on `key` carrying `marker`, if there is one.
pub(super) async fn find_comment(
    jira: &Jira,
    request: &Request<'_>,
    key: &str,
    marker: &str,
) -> Result<Option<String>, Box<Report>> {
    let mut start = 0usize;
    for _ in 0..COMMENT_PAGES {
        let path = format!("issue/{key}/comment?startAt={start}&maxResults={COMMENT_PAGE}");
        let page = jira
            .call(reqwest::Method::GET, &path, None, request, "reading the issue's comments")
            .await?;
        let Some(comments) = page.get("comments").and_then(Value::as_array) else {
            return Err(unreadable("the answer listing the issue's comments has no comments"));
        };
        let found =
            comments.iter().find(|c| c.get("body").is_some_and(|b| render::has_marker(b, marker)));
        if let Some(comment) = found {
            let id = comment.get("id").and_then(Value::as_str).unwrap_or("?");
            return Ok(Some(id.to_owned()));
        }
        // Without a total, read on until a page comes back empty.
        let total = page
            .get("total")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |t| usize::try_from(t).unwrap_or(usize::MAX));
        start += comments.len();
        if comments.is_empty() || start >= total {
            return Ok(None);
        }
    }
    Err(unreadable("the issue has more comments than herald reads"))
}

/// A look-up answer that cannot say whether the message is there: `Unknown`, so nothing
/// is posted on its word.
fn unreadable(why: &str) -> Box<Report> {
    Box::new(Report {
        outcome: Outcome::Unknown {
            reason: format!(
                "herald could not tell whether an earlier attempt posted the message ({why})"
            ),
        },
        status: None,
        detail: None,
        pause: None,
    })
}

/// A failed look-up's report, turned into one that keeps the delivery ambiguous: nothing
/// may be posted until a look-up has answered. Throttling of the look-up itself waits
/// without burning an attempt; a permanent answer stays permanent.
pub(super) fn keep_ambiguous(report: Report) -> Report {
    let outcome = match report.outcome {
        Outcome::Throttled { after, reason } => Outcome::Reconciling {
            after: after.unwrap_or(RECHECK),
            reason: format!("the look-up was throttled: {reason}"),
        },
        Outcome::Retry { reason, .. } | Outcome::Unknown { reason } => Outcome::Unknown {
            reason: format!(
                "herald could not look up whether an earlier attempt posted the message, so it \
                 posts nothing yet: {reason}"
            ),
        },
        other => other,
    };
    Report { outcome, ..report }
}
