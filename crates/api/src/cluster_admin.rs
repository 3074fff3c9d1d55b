//! Cluster administration over the REST API (root credentials): decommission or remove
//! a member, and switch quorum writes on or off at runtime (the seed's `SetQuorum`).
//! Each is a ring command agreed through raft, so every node applies it.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bucketdb_cluster::membership::MembershipError;
use bucketdb_cluster::membership::ring_state::{MemberState, RingCommand};
use serde::Deserialize;
use serde_json::json;

use crate::ApiState;
use crate::body::read_json;
use crate::error::{ApiError, ApiResult};

fn cluster_error(e: MembershipError) -> ApiError {
    match e {
        MembershipError::Refused(why) | MembershipError::BadRequest(why) => {
            ApiError::ClusterChangeRefused(why)
        }
        other => ApiError::ClusterUnavailable(other.to_string()),
    }
}

/// Move a member to `state` through raft.
async fn set_member_state(state: &ApiState, id: &str, to: MemberState) -> ApiResult<Response> {
    let cluster = state.service.cluster();
    let membership = cluster
        .membership()
        .ok_or_else(|| ApiError::ClusterChangeRefused("this node is not in a cluster".into()))?;
    let ring = membership.ring();
    let member = ring
        .members
        .get(id)
        .ok_or_else(|| ApiError::ClusterChangeRefused(format!("no member {id}")))?;
    if member.state == MemberState::Removed {
        return Err(ApiError::ClusterChangeRefused(format!("{id} was removed")));
    }
    let others = ring.ring_members().into_iter().filter(|m| m != id).count();
    if others == 0 {
        return Err(ApiError::ClusterChangeRefused(format!(
            "{id} is the last member holding data"
        )));
    }
    let ring_version = membership
        .propose(RingCommand::SetMemberState {
            id: id.to_string(),
            state: to,
        })
        .await
        .map_err(cluster_error)?;
    Ok(Json(json!({"id": id, "state": to.as_str(), "ringVersion": ring_version})).into_response())
}

/// `POST /cluster/nodes/:id/decommission`: the member stops owning data; its versions
/// move to their new owners in the background, then it leaves the ring.
pub async fn decommission(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_member_state(&state, &id, MemberState::Draining).await
}

/// `POST /cluster/nodes/:id/remove`: drop a (dead) member; anti-entropy re-creates its
/// copies on the remaining members.
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_member_state(&state, &id, MemberState::Removed).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QuorumBody {
    quorum_required: bool,
}

/// `PUT /cluster/quorum {"quorumRequired": true}`: switch quorum writes at runtime.
pub async fn set_quorum(State(state): State<Arc<ApiState>>, body: Body) -> ApiResult<Response> {
    let req: QuorumBody = read_json(body).await?;
    let cluster = state.service.cluster();
    match cluster.membership() {
        Some(m) => {
            let ring = m.ring();
            m.propose(RingCommand::SetReplication {
                replication_factor: ring.replication_factor,
                quorum_required: req.quorum_required,
            })
            .await
            .map_err(cluster_error)?;
        }
        None => cluster.set_quorum(req.quorum_required),
    }
    Ok(Json(json!({"quorumRequired": req.quorum_required})).into_response())
}
