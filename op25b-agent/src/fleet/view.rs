//! An agent's view of `P/policy/`: every key as etcd holds it, and the
//! policy decoded from the values that passed validation.
//!
//! Refusal is per key: a bad grant keeps that grant's last good value (or
//! its absence) and leaves every other grant alone; a bad manifest or chunk
//! keeps the last good lists as a whole. The refusals are reported by key.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use super::{
    codec::{decode_grant, decode_lists, decode_subscriber_grant, FleetLists, KeyError},
    layout::{Layout, PolicyKey, GRANT_KINDS},
};
use crate::{
    policy::grants::{Grant, GrantState},
    policy::ListKind,
};

/// The fleet policy an agent enforces (besides its own configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetPolicy {
    /// The last policy change this reflects (etcd revision).
    pub revision: i64,
    pub lists: Arc<FleetLists>,
    pub grants: GrantState,
}

impl FleetPolicy {
    /// The next expiry after `now` of a fleet grant or list entry.
    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        let lists = &self.lists;
        [
            self.grants.next_expiry(now),
            lists.dynamic.next_expiry(now),
            lists.exempt.next_expiry(now),
            lists.allowed_destinations.next_expiry(now),
        ]
        .into_iter()
        .chain(lists.pools.iter().map(|p| p.prefixes.next_expiry(now)))
        .flatten()
        .min()
    }
}

/// What `snapshot_file` holds: the accepted values, as etcd had them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub format: u32,
    pub prefix: String,
    pub revision: i64,
    pub kvs: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct FleetView {
    layout: Layout,
    /// Every key under `P/policy/` and its value (chunks arrive before
    /// the manifest naming them).
    raw: BTreeMap<String, Vec<u8>>,
    grants: GrantState,
    /// Key of each accepted grant, for snapshots.
    grant_keys: BTreeMap<String, (ListKind, String)>,
    lists: Arc<FleetLists>,
    /// The accepted manifest and chunks, as etcd had them.
    lists_raw: BTreeMap<String, Vec<u8>>,
    lists_dirty: bool,
    list_refusal: Option<KeyError>,
    refused: BTreeMap<String, String>,
    /// The newest policy change seen (a put's mod_revision or a delete's revision).
    pub revision: i64,
}

impl FleetView {
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            raw: BTreeMap::new(),
            grants: GrantState::default(),
            grant_keys: BTreeMap::new(),
            lists: Arc::default(),
            lists_raw: BTreeMap::new(),
            lists_dirty: false,
            list_refusal: None,
            refused: BTreeMap::new(),
            revision: 0,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn grant_list(&mut self, kind: ListKind) -> &mut BTreeMap<String, Grant> {
        match kind {
            ListKind::AllowedDestinations => &mut self.grants.allowed_destinations,
            _ => &mut self.grants.exempt,
        }
    }

    fn references(&self, hash: &str) -> bool {
        let chunk_key = self.layout.chunk_key(hash);
        // While the lists are refused, any chunk may be the missing or fixed one.
        self.lists_raw.contains_key(&chunk_key) || self.list_refusal.is_some()
    }

    /// A key was put (or found in a full read) at `revision`.
    pub fn put(&mut self, key: &str, value: &[u8], revision: i64) {
        self.revision = self.revision.max(revision);
        if self.raw.get(key).is_some_and(|v| v == value) {
            return;
        }
        self.raw.insert(key.to_owned(), value.to_vec());
        match self.layout.classify(key) {
            Some(PolicyKey::Grant { kind, prefix }) => {
                match decode_grant(key, prefix, value, kind, self.layout.limits()) {
                    Ok(grant) => {
                        self.refused.remove(key);
                        let name = grant.prefix.clone();
                        self.grant_list(kind).insert(name.clone(), grant);
                        self.grant_keys.insert(key.to_owned(), (kind, name));
                    }
                    Err(e) => {
                        self.refused.insert(key.to_owned(), e.message);
                    }
                }
            }
            Some(PolicyKey::SubscriberGrant { name }) => {
                match decode_subscriber_grant(key, name, value) {
                    Ok(grant) => {
                        self.refused.remove(key);
                        self.grants
                            .exempt_subscribers
                            .insert(name.to_owned(), grant);
                    }
                    Err(e) => {
                        self.refused.insert(key.to_owned(), e.message);
                    }
                }
            }
            Some(PolicyKey::Manifest) => self.lists_dirty = true,
            Some(PolicyKey::Chunk { hash }) => {
                if self.references(hash) {
                    self.lists_dirty = true;
                }
            }
            Some(PolicyKey::Changed) | None => {}
            Some(PolicyKey::Unknown) => {
                self.refused.insert(
                    key.to_owned(),
                    "not an op25b policy key (grants/exempt/, grants/allowed_destinations/, grants/exempt_subscribers/, lists/)".into(),
                );
            }
        }
    }

    /// A key was deleted at `revision`.
    pub fn delete(&mut self, key: &str, revision: i64) {
        self.revision = self.revision.max(revision);
        if self.raw.remove(key).is_none() {
            return;
        }
        self.refused.remove(key);
        match self.layout.classify(key) {
            Some(PolicyKey::Grant { .. }) => {
                if let Some((kind, name)) = self.grant_keys.remove(key) {
                    self.grant_list(kind).remove(&name);
                }
            }
            Some(PolicyKey::SubscriberGrant { name }) => {
                self.grants.exempt_subscribers.remove(name);
            }
            Some(PolicyKey::Manifest) => self.lists_dirty = true,
            Some(PolicyKey::Chunk { hash }) if self.references(hash) => self.lists_dirty = true,
            _ => {}
        }
    }

    /// Replaces the view with a full read of `P/policy/` whose newest
    /// change is at `revision` (after a compaction or on first contact), as
    /// puts and deletes.
    pub fn resync(&mut self, kvs: &BTreeMap<String, Vec<u8>>, revision: i64) {
        let gone: Vec<String> = self
            .raw
            .keys()
            .filter(|k| !kvs.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.delete(&key, 0);
        }
        for (key, value) in kvs {
            self.put(key, value, 0);
        }
        // A read of the whole prefix is as new as its revision.
        self.revision = self.revision.max(revision);
    }

    /// Decodes the lists if their keys changed. True when the accepted
    /// lists changed.
    pub fn settle(&mut self) -> bool {
        if !std::mem::take(&mut self.lists_dirty) {
            return false;
        }
        let manifest_key = self.layout.manifest_key();
        let Some(value) = self.raw.get(&manifest_key) else {
            self.list_refusal = None;
            self.lists_raw.clear();
            let changed = *self.lists != FleetLists::default();
            self.lists = Arc::default();
            return changed;
        };
        let layout = &self.layout;
        let raw = &self.raw;
        let decoded = decode_lists(
            &manifest_key,
            value,
            |hash| {
                let key = layout.chunk_key(hash);
                let value = raw.get(&key).map(Vec::as_slice);
                (key, value)
            },
            layout.limits(),
        );
        match decoded {
            Ok((manifest, lists)) => {
                self.list_refusal = None;
                let mut keep: BTreeSet<String> = BTreeSet::from([manifest_key.clone()]);
                for pool in &manifest.pools {
                    keep.extend(pool.list.chunks.iter().map(|h| layout.chunk_key(h)));
                }
                for list in [
                    &manifest.dynamic,
                    &manifest.exempt,
                    &manifest.allowed_destinations,
                ] {
                    keep.extend(list.chunks.iter().map(|h| layout.chunk_key(h)));
                }
                self.lists_raw = keep
                    .into_iter()
                    .filter_map(|k| raw.get(&k).map(|v| (k, v.clone())))
                    .collect();
                let changed = *self.lists != lists;
                self.lists = Arc::new(lists);
                changed
            }
            Err(e) => {
                self.list_refusal = Some(e);
                false
            }
        }
    }

    /// The accepted policy.
    pub fn policy(&self) -> FleetPolicy {
        FleetPolicy {
            revision: self.revision,
            lists: Arc::clone(&self.lists),
            grants: self.grants.clone(),
        }
    }

    /// Values refused now, by key, sorted.
    pub fn refusals(&self) -> Vec<KeyError> {
        let mut all: Vec<KeyError> = self
            .refused
            .iter()
            .map(|(k, m)| KeyError::new(k, m.clone()))
            .collect();
        all.extend(self.list_refusal.clone());
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// The accepted state, for `snapshot_file`.
    pub fn snapshot(&self) -> Snapshot {
        let mut kvs = BTreeMap::new();
        for (key, value) in &self.lists_raw {
            kvs.insert(key.clone(), String::from_utf8_lossy(value).into_owned());
        }
        for (key, (kind, name)) in &self.grant_keys {
            let list = match kind {
                ListKind::AllowedDestinations => &self.grants.allowed_destinations,
                _ => &self.grants.exempt,
            };
            if let Some(grant) = list.get(name) {
                kvs.insert(
                    key.clone(),
                    serde_json::to_string(grant).expect("grant serializes"),
                );
            }
        }
        for (name, grant) in &self.grants.exempt_subscribers {
            kvs.insert(
                self.layout.subscriber_grant_key(name),
                serde_json::to_string(grant).expect("grant serializes"),
            );
        }
        Snapshot {
            format: 1,
            prefix: self.layout.prefix().to_owned(),
            revision: self.revision,
            kvs,
        }
    }

    /// A view rebuilt from a snapshot, through the same validation as etcd's values.
    pub fn from_snapshot(layout: Layout, snapshot: &Snapshot) -> Result<Self, String> {
        if snapshot.format != 1 {
            return Err(format!("snapshot format {} is not 1", snapshot.format));
        }
        if snapshot.prefix != layout.prefix() {
            return Err(format!(
                "snapshot of fleet prefix {:?}, configured {:?}",
                snapshot.prefix,
                layout.prefix()
            ));
        }
        let mut view = Self::new(layout);
        view.resync(
            &snapshot
                .kvs
                .iter()
                .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                .collect(),
            snapshot.revision,
        );
        view.settle();
        if let Some(first) = view.refusals().first() {
            return Err(format!("snapshot holds a refused value: {first}"));
        }
        Ok(view)
    }

    /// Grants whose time has come and that are still in etcd: (key, revision
    /// they were read at) for a conditional delete.
    pub fn expired_grant_keys(&self, now: u64) -> Vec<String> {
        let mut keys = Vec::new();
        for kind in GRANT_KINDS {
            let list = match kind {
                ListKind::AllowedDestinations => &self.grants.allowed_destinations,
                _ => &self.grants.exempt,
            };
            for grant in list
                .values()
                .filter(|g| g.expires_at.is_some_and(|t| t <= now))
            {
                if let Ok(prefix) = grant.prefix.parse() {
                    keys.push(self.layout.grant_key(kind, &prefix));
                }
            }
        }
        keys.extend(
            self.grants
                .exempt_subscribers
                .values()
                .filter(|g| g.expires_at.is_some_and(|t| t <= now))
                .map(|g| self.layout.subscriber_grant_key(&g.subscriber)),
        );
        keys
    }

    /// Raw value of a key (tests, expiry).
    pub fn raw(&self, key: &str) -> Option<&[u8]> {
        self.raw.get(key).map(Vec::as_slice)
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
