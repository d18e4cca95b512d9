//! Where the memory store's changes go to outlive the process: a [`Journal`]. The memory store
//! alone has [`NoJournal`]; the durable store is the memory store over a journal that writes
//! every change to an embedded storage engine (`store::durable`) and gives it back on start.

use crate::{
    id::SessionId,
    store::{Backup, BackupError, StoreError},
};
use bytes::Bytes;
use std::future::{Future, ready};

tokio::task_local! {
    /// Set while a pipeline message is answered: the newest ticket whose wait was put off, so
    /// that the message's writes share one wait before its replies go out ([`deferring`]).
    static DEFERRED: std::cell::Cell<u64>;
}

/// Runs `answers` with the journal's waits put off: each write's settle notes its ticket and
/// returns at once, and the caller settles the returned ticket (0: none) once, with
/// `SessionStore::settle`, before any of the replies goes out. A pipeline message of many
/// writes then costs one write to the OS (or one sync, with `always`) instead of one each.
pub async fn deferring<F: Future>(answers: F) -> (F::Output, u64) {
    DEFERRED
        .scope(std::cell::Cell::new(0), async move {
            let out = answers.await;
            (out, DEFERRED.with(std::cell::Cell::get))
        })
        .await
}

/// Within [`deferring`]: notes `ticket` for the one wait after, and says so.
pub fn defer(ticket: u64) -> bool {
    DEFERRED
        .try_with(|newest| newest.set(newest.get().max(ticket)))
        .is_ok()
}

/// A change for the journal: a session's new state (its encoded record), or its removal.
pub type Change = (SessionId, Option<Vec<u8>>);

/// Records a store's changes, in commit order, durably enough for its mode.
pub trait Journal: Send + Sync + 'static {
    /// Whether the store reports changes at all: false spares the memory store the work.
    const RECORDS: bool;

    /// Whether what the journal holds outlives the process (the watch hello says so).
    fn durable(&self) -> bool;

    /// The store's name in the handshake: servers that give the same one share sessions.
    fn store_id(&self) -> &str;

    /// The lowest version a write may give a session in this process: above every version
    /// an earlier process may have acknowledged and lost (0: no journal, nothing lost).
    fn version_floor(&self) -> u64;

    /// Refuses a write while the journal cannot take one (a full disk, say), before it
    /// changes anything.
    fn check(&self) -> Result<(), StoreError>;

    /// Takes `changes`, all or none, after anything recorded before; called under the store's
    /// lock, so the journal's order is the order of commits. The ticket names them for
    /// [`settle`](Self::settle).
    fn record(&self, changes: Vec<Change>) -> u64;

    /// Resolves once the changes of `ticket` are as durable as the journal's mode promises;
    /// an error says they may not be (the write may have been applied anyway).
    fn settle(&self, ticket: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the journal failed and takes no changes until it is mended: what it held may
    /// no longer be what memory holds.
    fn needs_repair(&self) -> bool {
        false
    }

    /// Opens the journal again after a failure; whether it can be mended now.
    fn reopen(&self) -> bool {
        true
    }

    /// Makes the journal hold exactly `changes` (every session memory holds, each as it is
    /// now), durably; whether it could, which mends it.
    fn mend(&self, changes: Vec<Change>) -> bool {
        drop(changes);
        true
    }

    /// Every record held, for the store to load on start.
    fn records(&self) -> Box<dyn Iterator<Item = Result<(SessionId, Bytes), StoreError>> + '_> {
        Box::new(std::iter::empty())
    }

    /// Told once the store has loaded the records: what the journal kept to give them back
    /// may go.
    fn loaded(&self) {}

    /// Makes everything recorded durable: part of shutdown.
    fn flush(&self) {}

    /// Copies what the journal holds, as of one instant, into the new directory `to`.
    fn backup(&self, to: &std::path::Path) -> Result<Backup, BackupError> {
        let _ = to;
        Err(BackupError::Unsupported)
    }
}

/// The memory store's journal: nothing is kept beyond the process.
#[derive(Debug)]
pub struct NoJournal {
    /// `memory:` and random hex: every process holds a store of its own.
    store_id: String,
}

impl Default for NoJournal {
    fn default() -> Self {
        Self {
            store_id: format!("memory:{:016x}", rand::random::<u64>()),
        }
    }
}

impl Journal for NoJournal {
    const RECORDS: bool = false;

    fn durable(&self) -> bool {
        false
    }

    fn store_id(&self) -> &str {
        &self.store_id
    }

    fn version_floor(&self) -> u64 {
        0
    }

    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn record(&self, _: Vec<Change>) -> u64 {
        0
    }

    fn settle(&self, _: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deferred_waits_are_noted_within_the_scope_only() {
        assert!(!defer(3), "outside a scope a wait is not put off");
        let ((), newest) = deferring(async {
            assert!(defer(3));
            assert!(defer(7));
            assert!(defer(5));
        })
        .await;
        assert_eq!(newest, 7, "the one wait after covers the newest");
        let ((), none) = deferring(async {}).await;
        assert_eq!(none, 0);
    }
}
