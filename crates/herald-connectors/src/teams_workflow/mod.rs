//! The Teams Workflows connector (`kind = "teams-workflow"`).

pub mod render;

#[cfg(test)]
pub(crate) mod tests;
