//! The Jira Cloud connector (`kind = "jira"`): REST v3 with basic auth (e-mail + API
//! token). An original becomes an issue, a follow-up a comment on it, and a follow-up
//! with severity `resolved` also moves the issue with `transition_on_resolve`.

mod classify;
mod render;

#[cfg(test)]
mod tests;
