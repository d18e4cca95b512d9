//! A session as the memory store keeps it ([`Entry`]), its attributes in a small sorted
//! vector ([`Attrs`]), and the shared copies of names and content types they point to.

use super::super::{Attribute, SessionInfo, SessionSnapshot, Value, table::Grouped};
use crate::{apps::AppId, id::SessionId};
use bytes::Bytes;
use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

/// Distinct names and content types shared at most; beyond, each is stored on its own.
pub(super) const MAX_INTERNED: usize = 1024;
/// Longest text shared: longer names are rare and would make the shared set costly.
pub(super) const MAX_INTERNED_LEN: usize = 64;

/// A session's attributes, sorted by name. Sessions hold few attributes, and a slice costs a
/// fraction of a B-tree, whose smallest node has room for eleven; a boxed slice, not a
/// vector, since every change reallocates to the exact length anyway (8 bytes a session).
#[derive(Debug, Clone, Default)]
pub(super) struct Attrs(pub(super) Box<[(Arc<str>, Attribute)]>);

impl Attrs {
    pub(super) fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| (**n).cmp(name))
    }

    pub(super) fn get(&self, name: &str) -> Option<&Attribute> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    /// Sets `name` to `attr`; `shared_name` makes the key only for a name not there yet (a
    /// rewritten attribute keeps the one it has).
    pub(super) fn insert(
        &mut self,
        name: &str,
        attr: Attribute,
        shared_name: impl FnOnce() -> Arc<str>,
    ) {
        match self.find(name) {
            Ok(i) => self.0[i].1 = attr,
            Err(i) => {
                let mut attrs = std::mem::take(&mut self.0).into_vec();
                attrs.reserve_exact(1); // a vector's first growth would leave room for four
                attrs.insert(i, (shared_name(), attr));
                self.0 = attrs.into_boxed_slice();
            }
        }
    }

    pub(super) fn remove(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            let mut attrs = std::mem::take(&mut self.0).into_vec();
            attrs.remove(i);
            self.0 = attrs.into_boxed_slice();
        }
    }

    pub(super) fn to_map(&self) -> BTreeMap<String, Attribute> {
        self.0
            .iter()
            .map(|(n, a)| (n.to_string(), copy_out(a)))
            .collect()
    }
}

/// A copy of a stored attribute for a reader. Its bytes are copied, not shared: sharing a
/// `Bytes` allocates a header and keeps it for the stored value's life, 32 bytes per session
/// read, while a copy of a session-sized value is a fraction of the call's cost.
pub(super) fn copy_out(attr: &Attribute) -> Attribute {
    let value = match &attr.value {
        Value::Bytes { content_type, data } => Value::Bytes {
            content_type: Arc::clone(content_type),
            data: Bytes::copy_from_slice(data),
        },
        Value::List {
            content_type,
            items,
        } => Value::List {
            content_type: Arc::clone(content_type),
            items: items.iter().map(|i| Bytes::copy_from_slice(i)).collect(),
        },
        Value::Counter(n) => Value::Counter(*n),
    };
    Attribute {
        value,
        version: attr.version,
    }
}

/// The shared copy of `text`, made on first sight while there is room.
pub(super) fn intern(set: &mut HashSet<Arc<str>>, text: &str) -> Arc<str> {
    if let Some(shared) = set.get(text) {
        return Arc::clone(shared);
    }
    let new: Arc<str> = text.into();
    if set.len() < MAX_INTERNED && text.len() <= MAX_INTERNED_LEN {
        set.insert(Arc::clone(&new));
    }
    new
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) attrs: Attrs,
    pub(super) version: u64,
    pub(super) created_ms: u64,
    pub(super) last_access_ms: u64,
    pub(super) idle_ms: u64,
    pub(super) lifetime_ms: u64,
    /// What events name the session by.
    pub(super) reference: u64,
    /// Bytes it counts against the limits: at most `--max-session-size`, which a framed
    /// message's 32-bit length bounds anyway.
    size: u32,
    pub(super) app: AppId,
}

impl Grouped for Entry {
    fn group(&self) -> usize {
        self.app.index()
    }
}

impl Entry {
    pub(super) fn new(app: AppId, now: u64, idle_ms: u64, lifetime_ms: u64, size: u64) -> Self {
        let mut entry = Self {
            attrs: Attrs::default(),
            version: 1,
            created_ms: now,
            last_access_ms: now,
            idle_ms,
            lifetime_ms,
            reference: super::super::new_reference(),
            size: 0,
            app,
        };
        entry.set_size(size);
        entry
    }

    pub(super) fn size(&self) -> u64 {
        u64::from(self.size)
    }

    pub(super) fn set_size(&mut self, size: u64) {
        self.size = u32::try_from(size).unwrap_or(u32::MAX);
    }

    pub(super) fn deadline(&self) -> u64 {
        (self.last_access_ms.saturating_add(self.idle_ms))
            .min(self.created_ms.saturating_add(self.lifetime_ms))
    }

    pub(super) fn info(&self, id: &SessionId) -> SessionInfo {
        SessionInfo {
            id: *id,
            reference: self.reference,
            version: self.version,
            created_at_ms: self.created_ms,
            last_access_ms: self.last_access_ms,
            idle_timeout_ms: self.idle_ms,
            max_lifetime_ms: self.lifetime_ms,
            size_bytes: self.size(),
        }
    }

    pub(super) fn snapshot(&self, id: &SessionId, names: &[String]) -> SessionSnapshot {
        let attributes = if names.is_empty() {
            self.attrs.to_map()
        } else {
            names
                .iter()
                .filter_map(|n| self.attrs.get(n).map(|a| (n.clone(), copy_out(a))))
                .collect()
        };
        SessionSnapshot {
            info: self.info(id),
            attributes,
        }
    }
}

/// Applies staged changes; returns the changed names for the event.
pub(super) fn commit(
    entry: &mut Entry,
    changes: BTreeMap<String, Option<Attribute>>,
    size: u64,
    interned: &mut HashSet<Arc<str>>,
) -> Vec<String> {
    let mut names = Vec::with_capacity(changes.len());
    for (name, new) in changes {
        match new {
            Some(mut attr) => {
                // Most writes replace a value of the same type: its name and content type are
                // already shared ones, found without a lookup in `interned`.
                let old_type = entry.attrs.get(&name).and_then(|a| a.value.content_type());
                if let Value::Bytes { content_type, .. } | Value::List { content_type, .. } =
                    &mut attr.value
                {
                    *content_type = match old_type {
                        Some(same) if **same == **content_type => Arc::clone(same),
                        _ => intern(interned, content_type),
                    };
                }
                entry.attrs.insert(&name, attr, || intern(interned, &name));
            }
            None => entry.attrs.remove(&name),
        }
        names.push(name);
    }
    entry.set_size(size);
    names
}
