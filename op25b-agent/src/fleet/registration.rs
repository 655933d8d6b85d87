//! An agent's registration under `P/agents/<node>`: kept alive on a lease
//! (gone when the box is), with what `fleet status` shows of it.

use std::{sync::Arc, time::Duration};

use etcd_client::PutOptions;
use serde::{Deserialize, Serialize};

use super::{
    client::{self, etcd, FleetError},
    sync::FleetShared,
};

/// The registration lease; kept alive every third of it.
pub const REGISTRATION_TTL_SECONDS: i64 = 15;

/// What an agent publishes under `P/agents/<node>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub node: String,
    pub version: String,
    pub program: String,
    /// The fleet revision in this box's maps.
    pub applied_revision: i64,
    pub interfaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Keys whose values this box refused.
    #[serde(default)]
    pub refused_keys: Vec<String>,
    /// Where `/api/v1/top` answers (`top --fleet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_address: Option<String>,
    #[serde(default)]
    pub updated_at: u64,
}

/// Keeps `P/agents/<node>` alive on a lease and up to date.
pub(super) async fn keep_registered(shared: Arc<FleetShared>) {
    loop {
        if let Err(e) = registration_session(&shared).await {
            tracing::debug!("fleet registration: {e}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn registration_session(shared: &FleetShared) -> Result<(), FleetError> {
    let etcd_client = client::connect(&shared.config).await?;
    let mut leases = etcd_client.lease_client();
    let lease = leases
        .grant(REGISTRATION_TTL_SECONDS, None)
        .await
        .map_err(etcd("registration lease"))?
        .id();
    let (mut keeper, mut answers) = leases
        .keep_alive(lease)
        .await
        .map_err(etcd("registration keep-alive"))?;
    let mut kv = etcd_client.kv_client();
    let node = &shared.config.node_name;
    let seen = serde_json::json!({ "node": node, "last_registered": crate::clock::rfc3339(crate::clock::now_unix()) });
    kv.put(shared.layout.node_key(node), seen.to_string(), None)
        .await
        .map_err(etcd("registering"))?;
    let mut written: Option<Registration> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut keep_alive = tokio::time::interval(Duration::from_secs(
        u64::try_from(REGISTRATION_TTL_SECONDS / 3).unwrap_or(5),
    ));
    loop {
        tokio::select! {
            _ = keep_alive.tick() => {
                keeper.keep_alive().await.map_err(etcd("registration keep-alive"))?;
                let answer = answers.message().await.map_err(etcd("registration keep-alive"))?;
                if answer.is_none_or(|a| a.ttl() <= 0) {
                    return Err(FleetError::Conflict("registration lease expired".into()));
                }
            }
            _ = tick.tick() => {
                let registration = shared.registration();
                if written.as_ref() != Some(&registration) {
                    let mut value = registration.clone();
                    value.updated_at = crate::clock::now_unix();
                    kv.put(
                        shared.layout.agent_key(node),
                        serde_json::to_string(&value).expect("registration serializes"),
                        Some(PutOptions::new().with_lease(lease)),
                    )
                    .await
                    .map_err(etcd("registering"))?;
                    written = Some(registration);
                }
            }
        }
    }
}
