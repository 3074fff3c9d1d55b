//! The node's anti-entropy loop: a round every `anti_entropy_interval` and whenever the
//! ring changes, follow-up rounds while data is still moving, and the end of a
//! decommission (a draining node that has handed everything off leaves the ring).

use std::sync::Arc;
use std::time::Duration;

use bucketdb_cluster::membership::Membership;
use bucketdb_cluster::membership::ring_state::{MemberState, RingCommand};
use bucketdb_object::{AntiEntropyReport, ObjectService};
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the loop looks for a ring change.
const RING_WATCH_POLL: Duration = Duration::from_millis(500);
/// The next round after one that found data to move or copy.
const FOLLOW_UP_AFTER: Duration = Duration::from_secs(1);

pub async fn anti_entropy_loop(
    svc: Arc<ObjectService>,
    membership: Arc<Membership>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let me = membership.node_id().to_string();
    let mut seen_version = None;
    let mut next = Instant::now() + interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RING_WATCH_POLL) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let ring = membership.ring();
        let Some(member) = ring.members.get(&me) else {
            continue;
        };
        if member.state == MemberState::Removed
            || (seen_version == Some(ring.ring_version) && Instant::now() < next)
        {
            continue;
        }
        seen_version = Some(ring.ring_version);
        let draining = member.state == MemberState::Draining;
        let report = match svc.anti_entropy_round().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "anti-entropy round failed");
                next = Instant::now() + FOLLOW_UP_AFTER;
                continue;
            }
        };
        let moving = report.copies_queued + report.handoff_pending > 0;
        if moving || report.handed_off + report.removals_applied > 0 {
            tracing::info!(
                checked = report.versions_checked,
                copies_queued = report.copies_queued,
                handed_off = report.handed_off,
                handoff_pending = report.handoff_pending,
                removals_applied = report.removals_applied,
                "anti-entropy round"
            );
        }
        next = Instant::now() + if moving { FOLLOW_UP_AFTER } else { interval };
        if draining && drained(&svc, &report) {
            match membership
                .propose(RingCommand::SetMemberState {
                    id: me.clone(),
                    state: MemberState::Removed,
                })
                .await
            {
                Ok(v) => tracing::info!(ring_version = v, "decommission finished: left the ring"),
                Err(e) => {
                    tracing::warn!(error = %e, "leaving the ring failed; retrying");
                    next = Instant::now() + FOLLOW_UP_AFTER;
                }
            }
        }
    }
}

/// A draining node is done when it holds no version any more and has delivered every
/// change it made to the others.
fn drained(svc: &ObjectService, report: &AntiEntropyReport) -> bool {
    let cluster = svc.cluster();
    let held = report
        .versions_checked
        .saturating_sub(report.handed_off + report.removals_applied);
    held == 0
        && cluster
            .status()
            .nodes
            .iter()
            .all(|n| n.replication_backlog == 0)
}
