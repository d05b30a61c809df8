//! One destination's thread: the original and its updates, in order, and how the state
//! of the messages ahead of an update moves it (DESIGN.md invariant 5).
//!
//! The rules, which [`settle`] applies to a whole thread at once:
//! - an update goes (becomes `pending`) only once the original is delivered and every
//!   earlier update on the destination has ended, whatever way it ended: a failed or
//!   cancelled *update* does not fail the ones after it;
//! - a failed or cancelled *original* fails every waiting update with
//!   `predecessor_failed`, since a follow-up to a message the destination never got
//!   would make no sense;
//! - an operator's retry of that original revives those updates (back to `waiting`), so
//!   they go after it once it is delivered;
//! - an update waiting behind a held message says so in `last_error`.
//!
//! Nothing here knows seqs or ids: index 0 is the original, index n the n-th message on
//! this destination (an update that skipped the destination has no entry).

use crate::delivery::{FailReason, NotAllowed, Progress, State};
use crate::time::Timestamp;

/// What an update waiting behind a held original shows as its reason.
pub const HELD_ORIGINAL: &str =
    "waiting: the original is held for an operator; retry or cancel it and this update follows";

/// What an update waiting behind a held earlier update shows as its reason.
pub const HELD_UPDATE: &str = "waiting: an earlier update is held for an operator; retry or cancel it and this update follows";

/// What an update failed by its original shows as its reason.
pub const ORIGINAL_LOST: &str = "the original was not delivered here (it failed or was cancelled); \
     retrying the original sends this update after it";

/// What keeps an update from going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocker {
    /// Nothing: every message ahead has ended and the original was delivered.
    None,
    /// A message ahead is still being worked on.
    Open,
    /// The original is held for an operator.
    HeldOriginal,
    /// An earlier update is held for an operator.
    HeldUpdate,
}

fn is_lost(original: &State) -> bool {
    matches!(original, State::Failed(_) | State::Cancelled)
}

/// Moves every update of a thread that the messages ahead of it allow to move, and
/// returns the ones that changed (index, new progress), in thread order. The original
/// (`thread[0]`) is never changed. Applying the result and calling `settle` again
/// returns nothing: it is a fixed point.
pub fn settle(thread: &[Progress], now: Timestamp) -> Vec<(usize, Progress)> {
    let Some(original) = thread.first() else { return Vec::new() };
    let lost = is_lost(&original.state);
    let mut blocker = match original.state {
        State::Delivered => Blocker::None,
        State::Held => Blocker::HeldOriginal,
        _ => Blocker::Open,
    };
    let mut res = Vec::new();
    for (idx, current) in thread.iter().enumerate().skip(1) {
        let next = follow(current, original, lost, blocker, now);
        if blocker == Blocker::None && !next.state.is_terminal() {
            blocker = if next.state == State::Held { Blocker::HeldUpdate } else { Blocker::Open };
        }
        if next != *current {
            res.push((idx, next));
        }
    }
    res
}

/// The next progress of one update, given what is ahead of it.
fn follow(
    current: &Progress,
    original: &Progress,
    lost: bool,
    blocker: Blocker,
    now: Timestamp,
) -> Progress {
    let mut res = current.clone();
    if res.state == State::Failed(FailReason::PredecessorFailed) && !lost {
        // The original was retried: the update waits for it again, and lives at least
        // as long as the original's new deadline, or it would expire unsent.
        res.state = State::Waiting;
        res.expires_at = res.expires_at.max(original.expires_at);
    }
    if res.state != State::Waiting {
        return res;
    }
    if lost {
        res.state = State::Failed(FailReason::PredecessorFailed);
        res.last_error = Some(ORIGINAL_LOST.into());
        return res;
    }
    match blocker {
        Blocker::None => {
            res.state = State::Pending;
            res.next_attempt_at = now;
            res.last_error = None;
        }
        Blocker::Open => res.last_error = None,
        Blocker::HeldOriginal => res.last_error = Some(HELD_ORIGINAL.into()),
        Blocker::HeldUpdate => res.last_error = Some(HELD_UPDATE.into()),
    }
    res
}

/// Whether an operator may retry `thread[idx]` without reordering the thread: an update
/// may not be retried once a later update on its destination has been released (sent,
/// or due to be sent), since the retried one would then arrive after it, nor while a
/// message ahead of it has not ended. The original can always be retried: its updates
/// are never released before it is delivered.
///
/// # Errors
/// `NotAllowed` naming why, when a later update was released.
pub fn retry_keeps_order(thread: &[Progress], idx: usize) -> Result<(), NotAllowed> {
    if idx == 0 {
        return Ok(());
    }
    let ahead_open = thread.first().is_some_and(|original| original.state != State::Delivered)
        || thread.iter().take(idx).skip(1).any(|earlier| !earlier.state.is_terminal());
    if ahead_open {
        // Only reachable for an update that ended without being tried (expired unsent)
        // after an earlier message was itself retried: it goes after that one again.
        return Err(NotAllowed {
            state: "an update behind an earlier message on this destination that has not ended; \
                    retry it once that one has ended",
        });
    }
    let released = thread.iter().skip(idx + 1).any(|later| match later.state {
        State::Waiting | State::Failed(FailReason::PredecessorFailed) => false,
        // Ended without ever being tried: nothing of it reached the destination.
        State::Cancelled | State::Failed(_) => later.attempts > 0,
        _ => true,
    });
    if released {
        return Err(NotAllowed {
            state: "an update followed by a later update that was already released to this destination; \
                    retrying it would deliver it out of order, so send a new update instead",
        });
    }
    Ok(())
}
