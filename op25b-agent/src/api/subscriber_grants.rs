//! Grants by subscriber (`{"subscriber": "alice@example.jp"}` on
//! `/api/v1/exemptions`): persisted, audited and expiring like prefix
//! grants; the agent unions the active ones with `[policy]
//! exempt_subscribers` so they follow the subscriber's RADIUS sessions.
//! With `[fleet]` on they go to the fleet's etcd like prefix grants and
//! reach every box.

use std::collections::HashSet;

use super::{actor_or_api, AuditLine, Provisioning};
use crate::{
    api::{
        grant_store::{self, StoreError},
        server::Answer,
        types::{GrantRequest, RevokeAnswer, RevokeRequest},
    },
    clock::{now_unix, rfc3339},
    policy::{grants::GrantList, subscriber_grants},
};

const EXEMPTIONS_ONLY: &str =
    "subscriber: only exemptions follow a subscriber; allowed destinations are prefixes";

impl Provisioning {
    /// The subscribers granted an exemption and active at `now`.
    pub fn exempt_subscribers(&self, now: u64) -> HashSet<String> {
        let state = self.state.lock().expect("not poisoned");
        subscriber_grants::active(&state.exempt_subscribers, now)
    }

    /// `POST /api/v1/exemptions {"subscriber": ...}`.
    pub(super) fn add_subscriber(
        &self,
        list: GrantList,
        name: String,
        request: GrantRequest,
    ) -> Answer {
        if list != GrantList::Exemptions {
            return Answer::error(400, EXEMPTIONS_ONLY);
        }
        if let Err(e) = subscriber_grants::check_name(&name) {
            return Answer::error(400, e);
        }
        if request.reason.len() > 1024 || request.actor.len() > 256 {
            return Answer::error(400, "reason (1024) or actor (256) too long");
        }
        let now = now_unix();
        let grant = subscriber_grants::SubscriberGrant {
            subscriber: name,
            expires_at: request.ttl.map(|t| now + t.seconds()),
            reason: request.reason,
            actor: actor_or_api(request.actor),
            created_at: now,
        };
        let saved = match self.store.get() {
            Some(store) => store
                .put_subscriber(&grant)
                .map_err(|e| grant_store::answer(&e)),
            None => self.persist_change(|state| {
                state
                    .exempt_subscribers
                    .insert(grant.subscriber.clone(), grant.clone());
                Ok(())
            }),
        };
        if let Err(answer) = saved {
            return answer;
        }
        self.audit(&AuditLine {
            time: rfc3339(now),
            actor: &grant.actor,
            action: "add",
            list: list.name(),
            prefix: "",
            subscriber: Some(&grant.subscriber),
            expires_at: grant.expires_at.map(rfc3339),
            reason: &grant.reason,
        });
        Answer::json(201, &grant)
    }

    /// `DELETE /api/v1/exemptions?subscriber=..`: with `[fleet]` on from
    /// etcd, or, when etcd has none, from this box (a grant made here
    /// before the fleet can still be taken back).
    pub(super) fn revoke_subscriber(
        &self,
        list: GrantList,
        name: &str,
        request: &RevokeRequest,
    ) -> Answer {
        if list != GrantList::Exemptions {
            return Answer::error(400, EXEMPTIONS_ONLY);
        }
        if request.reason.len() > 1024 || request.actor.len() > 256 {
            return Answer::error(400, "reason (1024) or actor (256) too long");
        }
        let actor = actor_or_api(request.actor.clone());
        let in_store = self
            .store
            .get()
            .map(|store| store.delete_subscriber(name, &actor));
        let removed = match in_store {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) if !matches!(e, StoreError::NotFound(_)) => Err(grant_store::answer(&e)),
            _ => self.persist_change(|state| match state.exempt_subscribers.remove(name) {
                Some(_) => Ok(()),
                None => Err(Answer::error(
                    404,
                    format!("subscriber {name:?} is not granted in exemptions"),
                )),
            }),
        };
        if let Err(answer) = removed {
            return answer;
        }
        self.audit(&AuditLine {
            time: rfc3339(now_unix()),
            actor: &actor,
            action: "delete",
            list: list.name(),
            prefix: "",
            subscriber: Some(name),
            expires_at: None,
            reason: &request.reason,
        });
        Answer::json(
            200,
            &RevokeAnswer {
                deleted: name.to_owned(),
            },
        )
    }
}
