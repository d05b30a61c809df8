//! Unit and property tests of the core.

use super::*;

#[test]
fn delivered_is_terminal() {
    let p = Progress::new(Timestamp(0), Timestamp(1000), 3, false);
    let res = next(&p, Outcome::Delivered { remote_ref: None }, &RetryPolicy::default(), Capabilities::default(), Timestamp(1), 0.5);
    assert_eq!(res.state, State::Delivered);
}
