//! The webhook's payload: the same `text` and `blocks` as the Web API connector renders
//! (see `crate::slack::render`), without metadata, channel or thread, which incoming
//! webhooks do not take. A follow-up is a new message marked as an update.

use serde_json::{Value, json};

use crate::slack::render::{Role, blocks, fallback_text};
use crate::{Request, Thread};

/// The JSON body for one attempt.
pub fn payload(request: &Request<'_>) -> Value {
    let role = match request.thread {
        Thread::Original => Role::Original,
        Thread::Update { seq, .. } => Role::Reply { seq },
    };
    json!({
        "text": fallback_text(request.message, role),
        "blocks": blocks(request.message, role),
        "unfurl_links": false,
        "unfurl_media": false,
    })
}
