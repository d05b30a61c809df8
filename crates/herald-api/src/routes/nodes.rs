//! Nodes: the herald processes sharing the store, and which lanes each one drives.

use axum::Json;
use axum::extract::State;

use super::Shared;
use crate::dto::{NodeJson, NodesJson};
use crate::error::ApiError;

/// `GET /v1/nodes`: every node seen recently (this one alone on SQLite), by id.
pub(super) async fn list(State(state): State<Shared>) -> Result<Json<NodesJson>, ApiError> {
    let this = state.engine.node_id().to_owned();
    let nodes = state.engine.nodes().await?;
    let nodes = nodes.iter().map(|node| NodeJson::new(node, node.node_id == this)).collect();
    Ok(Json(NodesJson { nodes }))
}
