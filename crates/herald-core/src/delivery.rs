//! The delivery state machine: one (message × destination) and every way it moves.
//!
//! Each function here computes the next [`Progress`] from the current one and its
//! inputs; none of them touches a store. The store persists the result with a
//! compare-and-set on the lease token, so a stale worker can never overwrite a newer
//! attempt's result.

use std::fmt;
use std::time::Duration;

use crate::outcome::Outcome;
use crate::retry::RetryPolicy;
use crate::time::Timestamp;

/// Where a delivery is. Who moves it in and out of each state is noted per variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Waiting for `next_attempt_at`. Entered on creation, after a retryable outcome,
    /// when a predecessor is delivered, or by an operator's retry; left when a lane
    /// claims it.
    Pending,
    /// Leased by one worker until its lease expires. Entered by a claim; left when the
    /// attempt's outcome is recorded or the lease is recovered as `Unknown`.
    InFlight,
    /// An update whose original on this destination is not delivered yet, or an earlier
    /// update there has not ended. Left (by `thread::settle`) to `Pending` once the
    /// original is delivered and every earlier update ended, or to `Failed` with
    /// `PredecessorFailed` when the original fails or is cancelled.
    Waiting,
    /// An ambiguous outcome with no safe automatic action; an operator retries or
    /// cancels it.
    Held,
    /// Terminal: the destination has the message.
    Delivered,
    /// Terminal: the delivery gave up, for the reason given.
    Failed(FailReason),
    /// Terminal: an operator cancelled it.
    Cancelled,
}

impl State {
    /// Whether no automatic transition leaves this state.
    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Delivered | State::Failed(_) | State::Cancelled)
    }

    /// The lowercase name stored and shown by the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::InFlight => "in_flight",
            State::Waiting => "waiting",
            State::Held => "held",
            State::Delivered => "delivered",
            State::Failed(_) => "failed",
            State::Cancelled => "cancelled",
        }
    }
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The destination rejected the message in a way retrying cannot fix.
    Permanent,
    /// `max_attempts` attempts were made.
    AttemptsExhausted,
    /// The delivery outlived its maximum age (or the broadcast's expiry).
    Expired,
    /// The original this update follows failed or was cancelled on the destination; an
    /// operator's retry of the original revives the update.
    PredecessorFailed,
    /// An ambiguous outcome no attempt can follow: the destination may have the message,
    /// and nothing herald can do proves it either way.
    Ambiguous,
}

impl FailReason {
    /// The snake_case code stored and shown by the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailReason::Permanent => "permanent",
            FailReason::AttemptsExhausted => "attempts_exhausted",
            FailReason::Expired => "expired",
            FailReason::PredecessorFailed => "predecessor_failed",
            FailReason::Ambiguous => "ambiguous",
        }
    }

    /// Parses [`FailReason::as_str`]'s output.
    pub fn parse(code: &str) -> Option<FailReason> {
        Some(match code {
            "permanent" => FailReason::Permanent,
            "attempts_exhausted" => FailReason::AttemptsExhausted,
            "expired" => FailReason::Expired,
            "predecessor_failed" => FailReason::PredecessorFailed,
            "ambiguous" => FailReason::Ambiguous,
            _ => return None,
        })
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do after an ambiguous outcome at a destination that can neither
/// deduplicate by key nor be searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnknown {
    /// Send again; the destination may end with two copies.
    #[default]
    Resend,
    /// Park the delivery in `held` for an operator.
    Hold,
}

/// What a destination's API lets herald do; declared by each connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// The destination drops a second request with the same idempotency key.
    pub dedupe_by_key: bool,
    /// herald can search the destination for a message it may have posted.
    pub lookup: bool,
    /// Updates can edit the original in place.
    pub edit: bool,
    /// Updates can be posted as replies to the original.
    pub thread_reply: bool,
}

impl Capabilities {
    /// Whether sending again after an ambiguous outcome cannot create a duplicate.
    pub fn resolves_ambiguity(self) -> bool {
        self.dedupe_by_key || self.lookup
    }
}

/// The mutable part of a delivery: everything the state machine reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Where the delivery is.
    pub state: State,
    /// Attempts made so far; throttled attempts are not counted.
    pub attempts: u32,
    /// The bound on `attempts`, fixed when the delivery was created.
    pub max_attempts: u32,
    /// When the delivery may next be claimed (meaningful in `Pending`).
    pub next_attempt_at: Timestamp,
    /// After this instant the delivery fails with `expired` instead of being retried.
    pub expires_at: Timestamp,
    /// The previous attempt ended ambiguously, so the next one must reconcile (look up
    /// or rely on the idempotency key) before posting.
    pub ambiguous: bool,
    /// The latest error, in plain words.
    pub last_error: Option<String>,
    /// The destination's id for the posted message, once delivered.
    pub remote_ref: Option<String>,
    /// When the destination accepted the message.
    pub delivered_at: Option<Timestamp>,
    /// Delivered, but the destination could not confirm the post (see
    /// [`Outcome::Delivered`]).
    pub unconfirmed: bool,
}

impl Progress {
    /// A delivery that has not been tried: `Pending` (due at `now`) for an original or
    /// an update whose predecessor is already delivered, `Waiting` otherwise.
    pub fn new(
        now: Timestamp,
        expires_at: Timestamp,
        max_attempts: u32,
        waiting: bool,
    ) -> Progress {
        Progress {
            state: if waiting { State::Waiting } else { State::Pending },
            attempts: 0,
            max_attempts: max_attempts.max(1),
            next_attempt_at: now,
            expires_at,
            ambiguous: false,
            last_error: None,
            remote_ref: None,
            delivered_at: None,
            unconfirmed: false,
        }
    }
}

/// Decides what follows an attempt. Pure: the same inputs always give the same answer.
///
/// `jitter` is a uniform sample in `[0, 1]` used for the backoff. Terminal states
/// absorb every outcome, and so does `Held`, which only an operator moves on; a delivery past `expires_at` fails as `expired` unless the
/// outcome says it was delivered; throttles do not count as attempts.
pub fn next(
    current: &Progress,
    outcome: Outcome,
    policy: &RetryPolicy,
    capabilities: Capabilities,
    now: Timestamp,
    jitter: f64,
) -> Progress {
    if current.state.is_terminal() || current.state == State::Held {
        return current.clone();
    }
    let mut res = current.clone();
    let consumed = outcome.consumes_attempt();
    if consumed {
        res.attempts = (res.attempts + 1).min(res.max_attempts);
    }
    match outcome {
        Outcome::Delivered { remote_ref, unconfirmed } => {
            res.state = State::Delivered;
            res.remote_ref = remote_ref;
            res.unconfirmed = unconfirmed;
            res.delivered_at = Some(now);
            res.ambiguous = false;
            return res;
        }
        Outcome::Permanent { reason } => {
            res.last_error = Some(reason);
            res.state = State::Failed(FailReason::Permanent);
        }
        Outcome::Retry { reason, after } => {
            res.last_error = Some(reason);
            let delay = policy.delay(res.attempts, jitter).max(after.unwrap_or(Duration::ZERO));
            schedule(&mut res, now, delay, true);
        }
        Outcome::Throttled { after, reason } => {
            res.last_error = Some(reason);
            let delay = after.unwrap_or_else(|| policy.delay(res.attempts + 1, jitter));
            schedule(&mut res, now, delay, false);
        }
        Outcome::Reconciling { after, reason } => {
            // `ambiguous` stays set: the next attempt must look again before posting.
            res.last_error = Some(reason);
            schedule(&mut res, now, after, false);
        }
        Outcome::Unknown { reason } => {
            res.ambiguous = true;
            let resend =
                capabilities.resolves_ambiguity() || policy.on_unknown == OnUnknown::Resend;
            if res.attempts >= res.max_attempts || now >= res.expires_at {
                // No attempt is left to resolve the doubt, so say it as it is: the
                // destination may have the message. `hold` leaves the call to an operator
                // (unless the delivery expired, which wins below; the words stay).
                res.last_error = Some(format!(
                    "{reason}; no attempt is left to settle it, so the destination may \
                     have received the message"
                ));
                res.state = if policy.on_unknown == OnUnknown::Hold {
                    State::Held
                } else {
                    State::Failed(FailReason::Ambiguous)
                };
            } else if resend {
                res.last_error = Some(reason);
                let delay = policy.delay(res.attempts, jitter);
                schedule(&mut res, now, delay, true);
            } else {
                res.last_error = Some(reason);
                res.state = State::Held;
            }
        }
    }
    // Past the deadline every outcome but `Delivered` (returned above) ends as `expired`,
    // even one that would otherwise fail as permanent or exhausted: the reason stays in
    // `last_error`.
    if now >= res.expires_at {
        res.state = State::Failed(FailReason::Expired);
    }
    res
}

/// [`next`] for a circuit breaker's probe. The probe is the breaker's request to learn
/// whether the destination is back, so a probe that fails (`Retry`, `Unknown`) gives its
/// attempt back: the delivery is decided as if it had one attempt more, and its count
/// is left as it was (an `Unknown` still marks it ambiguous). A delivered, throttled or
/// permanent answer counts as usual.
pub fn next_after_probe(
    current: &Progress,
    outcome: Outcome,
    policy: &RetryPolicy,
    capabilities: Capabilities,
    now: Timestamp,
    jitter: f64,
) -> Progress {
    if !matches!(outcome, Outcome::Retry { .. } | Outcome::Unknown { .. })
        || current.state != State::InFlight
    {
        return next(current, outcome, policy, capabilities, now, jitter);
    }
    let widened =
        Progress { max_attempts: current.max_attempts.saturating_add(1), ..current.clone() };
    let mut res = next(&widened, outcome, policy, capabilities, now, jitter);
    res.attempts = current.attempts;
    res.max_attempts = current.max_attempts;
    res
}

/// Moves `res` to `Pending` after `delay`, or to its terminal state when the attempt
/// budget or the maximum age runs out first.
fn schedule(res: &mut Progress, now: Timestamp, delay: Duration, consumed: bool) {
    let at = now.add(delay);
    if consumed && res.attempts >= res.max_attempts {
        res.state = State::Failed(FailReason::AttemptsExhausted);
    } else if at > res.expires_at || now >= res.expires_at {
        // No attempt could happen before the deadline, so fail now rather than wake up
        // later only to expire.
        res.state = State::Failed(FailReason::Expired);
    } else {
        res.state = State::Pending;
        res.next_attempt_at = at;
    }
}

/// A lane claims a due delivery. `None` when it is not claimable (not `Pending`, not
/// due yet), so a stale read can never claim twice.
pub fn claim(current: &Progress, now: Timestamp) -> Option<Progress> {
    if current.state != State::Pending || current.next_attempt_at > now {
        return None;
    }
    let mut res = current.clone();
    res.state = State::InFlight;
    Some(res)
}

/// A claimed delivery was never started (shutdown, breaker): back to `Pending`, due at
/// once, no attempt consumed.
pub fn release(current: &Progress, now: Timestamp) -> Progress {
    let mut res = current.clone();
    if res.state == State::InFlight {
        res.state = State::Pending;
        res.next_attempt_at = now;
    }
    res
}

/// An update directly behind its original, whose original reached `original`: the
/// two-message case of `thread::settle`, which the store applies to whole threads.
/// Only a waiting update moves.
pub fn on_predecessor(current: &Progress, original: &State, now: Timestamp) -> Progress {
    let mut res = current.clone();
    if res.state != State::Waiting {
        return res;
    }
    match original {
        State::Delivered => {
            res.state = State::Pending;
            res.next_attempt_at = now;
        }
        State::Failed(_) | State::Cancelled => {
            res.last_error = Some(crate::thread::ORIGINAL_LOST.into());
            res.state = State::Failed(FailReason::PredecessorFailed);
        }
        _ => {}
    }
    res
}

/// Why an operator's request does not apply to a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAllowed {
    /// The state the delivery is in.
    pub state: &'static str,
}

/// An operator asks for another try: a held, failed or pending delivery becomes due now
/// with a fresh attempt budget and age. Delivered, cancelled, waiting and in-flight
/// deliveries are left alone: retrying them would duplicate or reorder.
pub fn operator_retry(
    current: &Progress,
    policy: &RetryPolicy,
    now: Timestamp,
) -> Result<Progress, NotAllowed> {
    match current.state {
        State::Held | State::Failed(_) | State::Pending => {}
        _ => return Err(NotAllowed { state: current.state.as_str() }),
    }
    if current.state == State::Failed(FailReason::PredecessorFailed) {
        // It was never tried; it goes again when its original does.
        return Err(NotAllowed {
            state: "failed (predecessor_failed); retry the original on this destination instead",
        });
    }
    let mut res = current.clone();
    res.state = State::Pending;
    res.next_attempt_at = now;
    res.attempts = 0;
    res.expires_at = res.expires_at.max(now.add(policy.max_age));
    Ok(res)
}

/// An operator cancels a delivery that has not ended. An in-flight attempt may still
/// reach the destination; its result is discarded by the lease fence, but it counts as
/// an attempt: whoever asks whether the message may have been sent (a retry of an
/// earlier update, `thread::retry_keeps_order`) must hear yes.
pub fn cancel(current: &Progress) -> Result<Progress, NotAllowed> {
    if current.state.is_terminal() {
        return Err(NotAllowed { state: current.state.as_str() });
    }
    let mut res = current.clone();
    if res.state == State::InFlight {
        res.attempts = (res.attempts + 1).min(res.max_attempts);
    }
    res.state = State::Cancelled;
    Ok(res)
}

/// A claimed delivery found past its expiry before it was attempted: fail it as
/// `expired` without sending. `None` while it may still be attempted.
pub fn expire(current: &Progress, now: Timestamp) -> Option<Progress> {
    if current.state.is_terminal() || now < current.expires_at {
        return None;
    }
    let mut res = current.clone();
    res.state = State::Failed(FailReason::Expired);
    res.last_error =
        Some("expired before it could be delivered (max age or broadcast expiry)".into());
    Some(res)
}
