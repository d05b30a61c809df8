//! A destination's thread (`thread::settle`, `thread::retry_keeps_order`): examples of
//! each rule, then random lives of a small thread (an original and a few updates on one
//! destination) driven the way the store drives it, checking the ordering invariant.

use proptest::prelude::*;

use super::*;
use crate::delivery::{cancel, claim, expire, operator_retry, release};
use crate::thread::{HELD_ORIGINAL, HELD_UPDATE, ORIGINAL_LOST, retry_keeps_order, settle};

fn original() -> Progress {
    fresh(&policy(3))
}

fn update() -> Progress {
    let policy = policy(3);
    Progress::new(T0, T0.add(policy.max_age), policy.max_attempts, true)
}

fn with(state: State, p: Progress) -> Progress {
    Progress { state, ..p }
}

/// The states of `thread` after settling it at `now`.
fn settled(mut thread: Vec<Progress>, now: Timestamp) -> Vec<Progress> {
    for (idx, next) in settle(&thread, now) {
        thread[idx] = next;
    }
    thread
}

fn states(thread: &[Progress]) -> Vec<State> {
    thread.iter().map(|p| p.state.clone()).collect()
}

#[test]
fn updates_wait_until_the_original_is_delivered_then_go_one_at_a_time() {
    let open = vec![original(), update(), update()];
    assert_eq!(settle(&open, T0), vec![], "nothing moves while the original is open");
    let now = at(secs(5));
    let res = settled(vec![with(State::Delivered, original()), update(), update()], now);
    assert_eq!(states(&res), [State::Delivered, State::Pending, State::Waiting]);
    assert_eq!(res[1].next_attempt_at, now);
}

#[test]
fn a_failed_or_cancelled_original_fails_its_waiting_updates() {
    for lost in [State::Failed(FailReason::Permanent), State::Cancelled] {
        let res = settled(vec![with(lost.clone(), original()), update(), update()], T0);
        let failed = State::Failed(FailReason::PredecessorFailed);
        assert_eq!(states(&res), [lost, failed.clone(), failed]);
        assert_eq!(res[1].last_error.as_deref(), Some(ORIGINAL_LOST));
    }
}

#[test]
fn a_failed_or_cancelled_update_lets_the_next_one_go() {
    let delivered = with(State::Delivered, original());
    for ended in [State::Failed(FailReason::AttemptsExhausted), State::Cancelled] {
        let thread = vec![delivered.clone(), with(ended.clone(), update()), update(), update()];
        let res = settled(thread, T0);
        assert_eq!(states(&res), [State::Delivered, ended, State::Pending, State::Waiting]);
    }
}

#[test]
fn retrying_the_original_revives_its_updates_with_its_deadline() {
    let lost = settled(vec![with(State::Failed(FailReason::Permanent), original()), update()], T0);
    let retried = operator_retry(&lost[0], &policy(3), at(secs(7200))).unwrap();
    let res = settled(vec![retried.clone(), lost[1].clone()], at(secs(7200)));
    assert_eq!(states(&res), [State::Pending, State::Waiting]);
    assert_eq!(res[1].last_error, None);
    assert_eq!(res[1].expires_at, retried.expires_at, "the revived update would expire unsent");
}

#[test]
fn updates_behind_a_held_message_say_why_they_wait() {
    let res = settled(vec![with(State::Held, original()), update(), update()], T0);
    assert_eq!(states(&res), [State::Held, State::Waiting, State::Waiting]);
    assert_eq!(res[1].last_error.as_deref(), Some(HELD_ORIGINAL));
    assert_eq!(res[2].last_error.as_deref(), Some(HELD_ORIGINAL));

    let thread =
        vec![with(State::Delivered, original()), with(State::Held, update()), update(), update()];
    let res = settled(thread, T0);
    assert_eq!(res[2].last_error.as_deref(), Some(HELD_UPDATE));
    assert_eq!(res[3].last_error.as_deref(), Some(HELD_UPDATE));

    // Once the hold is resolved, the reason goes.
    let mut resolved = res.clone();
    resolved[1] = operator_retry(&res[1], &policy(3), T0).unwrap();
    let res = settled(resolved, T0);
    assert_eq!((res[2].state.clone(), res[2].last_error.clone()), (State::Waiting, None));
}

#[test]
fn an_update_retry_that_would_reorder_is_refused() {
    let delivered = with(State::Delivered, original());
    let failed = Progress { attempts: 1, ..with(State::Failed(FailReason::Permanent), update()) };
    for later in [State::Pending, State::InFlight, State::Held, State::Delivered] {
        let thread = vec![delivered.clone(), failed.clone(), with(later.clone(), update())];
        assert!(retry_keeps_order(&thread, 1).is_err(), "{later:?}");
    }
    let tried_and_cancelled = Progress { attempts: 1, ..with(State::Cancelled, update()) };
    let thread = vec![delivered.clone(), failed.clone(), tried_and_cancelled];
    assert!(retry_keeps_order(&thread, 1).is_err(), "a cancelled attempt may have arrived");

    let untried_cancelled = with(State::Cancelled, update());
    for later in [update(), untried_cancelled] {
        assert_eq!(retry_keeps_order(&[delivered.clone(), failed.clone(), later], 1), Ok(()));
    }
    // Cancelled during its first try, whose request may have arrived.
    let cancelled_in_flight = cancel(&with(State::InFlight, update())).unwrap();
    let thread = vec![delivered.clone(), failed.clone(), cancelled_in_flight];
    assert!(retry_keeps_order(&thread, 1).is_err(), "a cancel in flight may have arrived");

    // The original can always be retried; an update not while a message ahead is open.
    assert_eq!(retry_keeps_order(&[original(), with(State::Delivered, update())], 0), Ok(()));
    assert!(retry_keeps_order(&[original(), failed.clone()], 1).is_err());
}

/// One step of a thread's random life.
#[derive(Debug, Clone)]
enum Op {
    /// A lane claims message `idx`, if it is due.
    Claim(prop::sample::Index),
    /// The attempt at message `idx`, if in flight, ends with this outcome.
    Answer(prop::sample::Index, Outcome, f64),
    /// A claimed message is handed back.
    Release(prop::sample::Index),
    /// A claimed message is found expired.
    Expire(prop::sample::Index),
    /// An operator retries message `idx`.
    Retry(prop::sample::Index),
    /// An operator cancels message `idx`.
    Cancel(prop::sample::Index),
    /// A client adds an update.
    Add,
    /// Time passes.
    Wait(u64),
}

fn outcomes() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::delivered(Some("ref".into()))),
        2 => Just(Outcome::Retry { reason: "HTTP 503".into(), after: None }),
        1 => Just(Outcome::Throttled { reason: "HTTP 429".into(), after: Some(secs(1)) }),
        1 => Just(Outcome::Permanent { reason: "HTTP 404".into() }),
        1 => Just(Outcome::Unknown { reason: "timed out".into() }),
    ]
}

fn ops() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<prop::sample::Index>().prop_map(Op::Claim),
        4 => (any::<prop::sample::Index>(), outcomes(), 0.0..=1.0f64)
            .prop_map(|(idx, outcome, jitter)| Op::Answer(idx, outcome, jitter)),
        1 => any::<prop::sample::Index>().prop_map(Op::Release),
        1 => any::<prop::sample::Index>().prop_map(Op::Expire),
        2 => any::<prop::sample::Index>().prop_map(Op::Retry),
        1 => any::<prop::sample::Index>().prop_map(Op::Cancel),
        1 => Just(Op::Add),
        1 => (0u64..300_000).prop_map(Op::Wait),
    ]
}

/// The thread as the store keeps it: every write the store settles after, settled.
struct Model {
    thread: Vec<Progress>,
    policy: RetryPolicy,
}

impl Model {
    fn settle(&mut self, now: Timestamp) {
        for (idx, next) in settle(&self.thread, now) {
            self.thread[idx] = next;
        }
    }

    fn lost(&self) -> bool {
        matches!(self.thread[0].state, State::Failed(_) | State::Cancelled)
    }
}

/// Whether the message was handed to a lane at some point: it is, or was, in flight.
fn released(p: &Progress) -> bool {
    matches!(p.state, State::Pending | State::InFlight | State::Held | State::Delivered)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_thread_lives_keep_the_order(
        updates in 1usize..4,
        script in prop::collection::vec(ops(), 1..80),
    ) {
        let mut policy = policy(3);
        policy.on_unknown = OnUnknown::Hold;
        // A short life, so that expiries are frequent too.
        policy.max_age = secs(600);
        let expires_at = T0.add(policy.max_age);
        let mut model = Model { thread: vec![Progress::new(T0, expires_at, 3, false)], policy };
        model.thread.extend((0..updates).map(|_| Progress::new(T0, expires_at, 3, true)));
        let mut now = T0;
        for op in script {
            let len = model.thread.len();
            match op {
                Op::Claim(idx) => {
                    let idx = idx.index(len);
                    if let Some(claimed) = claim(&model.thread[idx], now) {
                        let ahead = &model.thread[..idx];
                        prop_assert!(
                            idx == 0 || (ahead[0].state == State::Delivered
                                && ahead.iter().all(|p| p.state.is_terminal())),
                            "update {} was claimed before the messages ahead ended: {:?}",
                            idx, states(ahead)
                        );
                        model.thread[idx] = claimed;
                    }
                }
                Op::Answer(idx, outcome, jitter) => {
                    let idx = idx.index(len);
                    if model.thread[idx].state == State::InFlight {
                        let caps = Capabilities::default();
                        let res = next(&model.thread[idx], outcome, &model.policy, caps, now, jitter);
                        let settles = res.state.is_terminal() || res.state == State::Held;
                        model.thread[idx] = res;
                        // The store settles only after an end or a hold, as here.
                        if settles {
                            model.settle(now);
                        }
                    }
                }
                Op::Release(idx) => {
                    let idx = idx.index(len);
                    model.thread[idx] = release(&model.thread[idx], now);
                }
                Op::Expire(idx) => {
                    let idx = idx.index(len);
                    let in_flight = model.thread[idx].state == State::InFlight;
                    if let Some(res) = expire(&model.thread[idx], now).filter(|_| in_flight) {
                        model.thread[idx] = res;
                        model.settle(now);
                    }
                }
                Op::Retry(idx) => {
                    let idx = idx.index(len);
                    let allowed = operator_retry(&model.thread[idx], &model.policy, now)
                        .and_then(|res| retry_keeps_order(&model.thread, idx).map(|()| res));
                    if let Ok(res) = allowed {
                        model.thread[idx] = res;
                        model.settle(now);
                        if idx == 0 {
                            let lost = State::Failed(FailReason::PredecessorFailed);
                            prop_assert!(
                                model.thread.iter().all(|p| p.state != lost),
                                "a retried original left updates failed: {:?}",
                                states(&model.thread)
                            );
                        }
                    }
                }
                Op::Cancel(idx) => {
                    let idx = idx.index(len);
                    if let Ok(res) = cancel(&model.thread[idx]) {
                        model.thread[idx] = res;
                        model.settle(now);
                    }
                }
                Op::Add => {
                    model.thread.push(Progress::new(now, now.add(model.policy.max_age), 3, true));
                    model.settle(now);
                }
                Op::Wait(d) => now = now.add(ms(d)),
            }

            let thread = &model.thread;
            // The store's shortcuts (no settle after a claim, a release or a retry
            // outcome) lose nothing: the thread is always settled.
            prop_assert_eq!(settle(thread, now), vec![], "unsettled: {:?}", states(thread));
            for (idx, p) in thread.iter().enumerate().skip(1) {
                if released(p) {
                    prop_assert_eq!(&thread[0].state, &State::Delivered, "update {} before the original", idx);
                    prop_assert!(
                        thread[1..idx].iter().all(|q| q.state.is_terminal()),
                        "update {} released before an earlier one ended: {:?}", idx, states(thread)
                    );
                }
                if p.state == State::Failed(FailReason::PredecessorFailed) {
                    // Only a lost original fails an update: a failed update never does.
                    prop_assert!(model.lost(), "update {} failed by a predecessor that is not the original: {:?}", idx, states(thread));
                }
                if p.state == State::Waiting && thread[0].state == State::Held {
                    prop_assert_eq!(p.last_error.as_deref(), Some(HELD_ORIGINAL));
                }
            }
        }
    }
}
