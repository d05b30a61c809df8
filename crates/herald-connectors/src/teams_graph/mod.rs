//! The Microsoft Graph channel-message connector (`kind = "teams-graph"`).

pub mod render;

#[cfg(test)]
mod tests;
