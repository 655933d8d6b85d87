//! Where grants live when a fleet shares them (etcd, see `crate::fleet`)
//! instead of this box's state file: the provisioning API's seam. The
//! store writes the grant and its audit line in one transaction; the box
//! enforces it once the fleet's watch brings it back.

use super::server::Answer;
use crate::policy::{grants::Grant, prefix::Prefix, subscriber_grants::SubscriberGrant, ListKind};

/// Why a shared grant store did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

pub trait GrantStore: Send + Sync {
    fn put(&self, kind: ListKind, grant: &Grant) -> Result<(), StoreError>;
    fn delete(&self, kind: ListKind, prefix: &Prefix, actor: &str) -> Result<(), StoreError>;
    fn list(&self, kind: ListKind) -> Result<Vec<Grant>, StoreError>;
    /// Exemptions by subscriber (they follow the subscriber's RADIUS sessions).
    fn put_subscriber(&self, grant: &SubscriberGrant) -> Result<(), StoreError>;
    fn delete_subscriber(&self, name: &str, actor: &str) -> Result<(), StoreError>;
    fn list_subscribers(&self) -> Result<Vec<SubscriberGrant>, StoreError>;
}

/// The API's answer to a store that failed: nothing changed either way.
pub fn answer(error: &StoreError) -> Answer {
    match error {
        StoreError::NotFound(m) => Answer::error(404, m.clone()),
        StoreError::Unavailable(m) => Answer::error(503, format!("not changed: {m}")),
    }
}
