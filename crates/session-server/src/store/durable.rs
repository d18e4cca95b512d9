//! The durable store: the memory store ([`MemoryStore`]) over a journal kept by fjall, an
//! embedded LSM tree with a write-ahead journal of its own (docs/architecture.md, "The
//! durable store", says why this engine and gives the figures).
//!
//! Every session lives in memory as in the memory store, so reads never touch the disk; every
//! change also becomes a record in fjall (the session's whole state under its id, or its
//! removal), in commit order, and a start loads them all back. How long a write waits before
//! its reply is `--fsync`'s choice, as Redis's `appendfsync`:
//! - `always`: until its record is on disk (`fdatasync`); concurrent writes share one, as in
//!   an event loop: a write lets every other ready call record its change first, then one
//!   sync serves them all.
//! - `everysec`: until its record is in the OS (a `write`, so a crash of the process loses
//!   nothing); a thread syncs every second, so a power cut loses at most about a second.
//! - `no`: the same write to the OS, and the OS syncs when it likes.
//!
//! Versions are never reused for different contents: each process writes versions above a
//! floor made at its start from the clock (and above the last process's floor), so a write
//! acknowledged and then lost with the OS's buffers is never followed by another with its
//! version. When the journal fails (a full disk), writes are refused until a fresh copy of
//! every session could be written, reads go on from memory, and the sweep retries each second.

use super::{
    Backup, BackupError, Limits, StoreError,
    memory::{
        MemoryStore,
        journal::{Change, Journal},
    },
};
use crate::{apps::Apps, clock::Clock, events::EventLog, id::SessionId};
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use parking_lot::{Condvar, Mutex, RwLock};
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::watch;

/// The memory store over fjall.
pub type DurableStore = MemoryStore<FjallJournal>;

/// The layout this server writes, in the meta keyspace; a newer one is refused, this one and
/// earlier ones are read.
pub const FORMAT: u32 = 1;

/// How long a write waits for the disk: what Redis's `appendfsync` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// A reply only once its write is on disk (group commit).
    Always,
    /// Writes reach the OS before their reply and the disk within about a second.
    #[default]
    EverySec,
    /// Writes reach the OS before their reply; the OS decides when the disk.
    No,
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "everysec" => Ok(Self::EverySec),
            "no" => Ok(Self::No),
            _ => Err(format!("{s:?}: write always, everysec or no")),
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Always => "always",
            Self::EverySec => "everysec",
            Self::No => "no",
        })
    }
}

/// Why a data directory cannot be opened: one line that names it and says what to do.
#[derive(Debug, thiserror::Error)]
#[error("data directory {}: {reason}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    pub reason: String,
}

/// fjall's handles: the database, its meta keyspace and the keyspace of session records.
#[derive(Clone)]
struct Engine {
    db: Database,
    meta: Keyspace,
    sessions: Keyspace,
}

const META: &str = "meta";
const SESSIONS: &str = "sessions";
const KEY_FORMAT: &[u8] = b"format";
const KEY_STORE_ID: &[u8] = b"store_id";
const KEY_FLOOR: &[u8] = b"version_floor";

/// Versions a process may write before its floor reaches the next process's: a floor is the
/// start's time in milliseconds times this.
const VERSIONS_PER_MS: u64 = 1 << 20;

/// The journal of the durable store: fjall, and what the store waits for. Dropped, it stops
/// its syncing thread and closes fjall (so the data directory can be opened again at once).
pub struct FjallJournal {
    shared: Arc<Shared>,
    syncing: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FjallJournal {
    fn drop(&mut self) {
        {
            // Under the thread's lock, so that it cannot miss it between look and sleep.
            let _sleeping = self.shared.sleeping.lock();
            self.shared.closing.store(true, Ordering::Release);
        }
        self.shared.wake.notify_one();
        if let Some(thread) = self.syncing.take() {
            let _ = thread.join();
        }
    }
}

impl std::ops::Deref for FjallJournal {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// What the store and the syncing thread share.
pub struct Shared {
    dir: PathBuf,
    fsync: Fsync,
    engine: RwLock<Option<Engine>>,
    store_id: String,
    floor: u64,
    /// The ticket of the newest change recorded (tickets count changes, from 1).
    recorded: AtomicU64,
    /// Changes up to this ticket are in the OS.
    flushed: AtomicU64,
    /// Changes up to this ticket are on disk.
    synced: watch::Sender<u64>,
    /// Held while flushing to the OS, so that one flush serves every waiter.
    flushing: Mutex<()>,
    /// The syncing thread sleeps on it for a second at a time; closing wakes it.
    sleeping: Mutex<()>,
    wake: Condvar,
    /// Why the journal cannot take changes, while it cannot.
    broken: Mutex<Option<String>>,
    is_broken: AtomicBool,
    closing: AtomicBool,
    /// Held by the backup in progress: one at a time.
    backing_up: Mutex<()>,
}

impl fmt::Debug for FjallJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallJournal")
            .field("dir", &self.dir)
            .field("fsync", &self.fsync)
            .field("store_id", &self.store_id)
            .finish()
    }
}

/// Opens (or makes) the data directory `dir` and the store over it; [`DurableStore::load`]
/// (`SessionStore::recover`) then loads its sessions. A directory that holds what this server
/// cannot read is refused, never changed.
pub fn open(
    dir: &Path,
    fsync: Fsync,
    limits: Limits,
    clock: Arc<dyn Clock>,
    events: Arc<EventLog>,
    apps: Arc<Apps>,
) -> Result<Arc<DurableStore>, OpenError> {
    let shared = Arc::new(Shared::open(dir, fsync, clock.now_ms())?);
    let syncer = Arc::clone(&shared);
    let syncing = std::thread::Builder::new()
        .name("session-journal".into())
        .spawn(move || sync_loop(&syncer))
        .map_err(|e| OpenError {
            path: dir.to_owned(),
            reason: format!("cannot start the journal's thread: {e}"),
        })?;
    let journal = FjallJournal {
        shared,
        syncing: Some(syncing),
    };
    Ok(Arc::new(MemoryStore::with_journal(
        limits, clock, events, apps, journal,
    )))
}

/// Once a second, syncs what `everysec` owes the disk (and hands `no`'s writes to the OS),
/// until the journal closes.
fn sync_loop(journal: &Shared) {
    loop {
        {
            let mut sleeping = journal.sleeping.lock();
            if journal.closing.load(Ordering::Acquire) {
                return;
            }
            journal.wake.wait_for(&mut sleeping, Duration::from_secs(1));
        }
        journal.sync();
    }
}

impl Shared {
    /// Opens `dir` at `now` (milliseconds since the epoch, from the store's clock).
    fn open(dir: &Path, fsync: Fsync, now: u64) -> Result<Self, OpenError> {
        let refuse = |reason: String| OpenError {
            path: dir.to_owned(),
            reason,
        };
        prepare(dir).map_err(refuse)?;
        let engine = Engine::open(dir, IN_USE).map_err(refuse)?;
        let format = engine
            .meta
            .get(KEY_FORMAT)
            .map_err(|e| refuse(damaged(&e)))?;
        let store_id = match format {
            Some(bytes) => {
                let found = u32::from_be_bytes(bytes.as_ref().try_into().map_err(|_| {
                    refuse("its format marker is damaged; restore a backup".into())
                })?);
                if found > FORMAT {
                    return Err(refuse(format!(
                        "it was written by a newer session-server (format {found}; this one reads up to {FORMAT}): run that version, or give another --data-dir"
                    )));
                }
                let id = engine
                    .meta
                    .get(KEY_STORE_ID)
                    .map_err(|e| refuse(damaged(&e)))?
                    .ok_or_else(|| refuse("its store id is missing; restore a backup".into()))?;
                String::from_utf8_lossy(&id).into_owned()
            }
            None => {
                if engine.sessions.first_key_value().is_some() {
                    return Err(refuse(
                        "it holds sessions but no format marker; restore a backup".into(),
                    ));
                }
                let id = format!(
                    "durable:{:016x}{:016x}",
                    rand::random::<u64>(),
                    rand::random::<u64>()
                );
                engine
                    .meta
                    .insert(KEY_FORMAT, FORMAT.to_be_bytes().to_vec())
                    .and_then(|()| engine.meta.insert(KEY_STORE_ID, id.clone().into_bytes()))
                    .map_err(|e| refuse(unwritable(&e)))?;
                id
            }
        };
        // Above every version the last process may have acknowledged.
        let last = engine
            .meta
            .get(KEY_FLOOR)
            .map_err(|e| refuse(damaged(&e)))?
            .and_then(|b| b.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        let floor = (now.saturating_mul(VERSIONS_PER_MS)).max(last.saturating_add(VERSIONS_PER_MS));
        engine
            .meta
            .insert(KEY_FLOOR, floor.to_be_bytes().to_vec())
            .and_then(|()| engine.db.persist(PersistMode::SyncAll))
            .map_err(|e| refuse(unwritable(&e)))?;
        Ok(Self {
            dir: dir.to_owned(),
            fsync,
            engine: RwLock::new(Some(engine)),
            store_id,
            floor,
            recorded: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            synced: watch::Sender::new(0),
            flushing: Mutex::new(()),
            sleeping: Mutex::new(()),
            wake: Condvar::new(),
            broken: Mutex::new(None),
            is_broken: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            backing_up: Mutex::new(()),
        })
    }

    /// The journal cannot take changes: `error` says why. Writes are refused until a repair.
    fn fail(&self, error: &fjall::Error) {
        let reason = format!(
            "the data directory {} cannot be written ({}): writes are refused until it can, reads go on",
            self.dir.display(),
            describe(error)
        );
        let mut broken = self.broken.lock();
        if broken.is_none() {
            tracing::error!(reason, "the durable store's journal failed");
        }
        *broken = Some(reason);
        self.is_broken.store(true, Ordering::Release);
        // Waiters on the disk hear of it at once.
        self.synced.send_modify(|_| {});
    }

    fn refusal(&self) -> StoreError {
        StoreError::Storage(
            self.broken
                .lock()
                .clone()
                .unwrap_or_else(|| "the data directory cannot be written".into()),
        )
    }

    /// Everything recorded so far into the OS (one flush for all who wait meanwhile).
    fn flush_to(&self, ticket: u64) -> Result<(), StoreError> {
        if self.flushed.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let _flushing = self.flushing.lock();
        if self.flushed.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let upto = self.recorded.load(Ordering::Acquire);
        let engine = self.engine.read();
        let Some(engine) = engine.as_ref() else {
            return Err(self.refusal());
        };
        match engine.db.persist(PersistMode::Buffer) {
            Ok(()) => {
                self.flushed.fetch_max(upto, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                self.fail(&e);
                Err(self.refusal())
            }
        }
    }

    /// The syncing thread's turn: what any mode owes the disk (or, with `no`, the OS).
    fn sync(&self) {
        if self.is_broken.load(Ordering::Acquire) {
            return;
        }
        let upto = self.recorded.load(Ordering::Acquire);
        if upto <= *self.synced.borrow() && upto <= self.flushed.load(Ordering::Acquire) {
            return;
        }
        let mode = match self.fsync {
            Fsync::No => PersistMode::Buffer,
            Fsync::Always | Fsync::EverySec => PersistMode::SyncData,
        };
        let engine = self.engine.read();
        let Some(engine) = engine.as_ref() else {
            return;
        };
        match engine.db.persist(mode) {
            Ok(()) => {
                self.flushed.fetch_max(upto, Ordering::AcqRel);
                if mode == PersistMode::SyncData {
                    self.synced.send_modify(|s| *s = (*s).max(upto));
                }
            }
            Err(e) => self.fail(&e),
        }
    }

    /// Puts `ticket` on disk: `always`'s group commit. The caller first lets every other call
    /// ready to run record its change (a yield), then one sync serves all of them; a caller
    /// that finds its change synced meanwhile returns at once. The sync runs on the caller's
    /// thread, as Redis's does on its event loop: a hand-off to another thread costs more than
    /// the sync on a busy machine (docs/performance.md, "Durable sessions").
    async fn synced_to(&self, ticket: u64) -> Result<(), StoreError> {
        if *self.synced.borrow() < ticket {
            tokio::task::yield_now().await;
        }
        if *self.synced.borrow() >= ticket {
            return Ok(());
        }
        let _syncing = self.flushing.lock();
        if *self.synced.borrow() >= ticket {
            return Ok(());
        }
        if self.is_broken.load(Ordering::Acquire) {
            return Err(self.refusal());
        }
        let upto = self.recorded.load(Ordering::Acquire);
        let engine = self.engine.read();
        let Some(engine) = engine.as_ref() else {
            return Err(self.refusal());
        };
        match engine.db.persist(PersistMode::SyncData) {
            Ok(()) => {
                self.flushed.fetch_max(upto, Ordering::AcqRel);
                self.synced.send_modify(|s| *s = (*s).max(upto));
                Ok(())
            }
            Err(e) => {
                self.fail(&e);
                Err(self.refusal())
            }
        }
    }
}

impl Journal for FjallJournal {
    const RECORDS: bool = true;

    fn durable(&self) -> bool {
        true
    }

    fn store_id(&self) -> &str {
        &self.store_id
    }

    fn version_floor(&self) -> u64 {
        self.floor
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.is_broken.load(Ordering::Acquire) {
            return Err(self.refusal());
        }
        Ok(())
    }

    fn record(&self, changes: Vec<Change>) -> u64 {
        let ticket = self.recorded.fetch_add(1, Ordering::AcqRel) + 1;
        if self.is_broken.load(Ordering::Acquire) {
            return ticket; // its settle fails; a repair writes everything anew
        }
        let engine = self.engine.read();
        let Some(engine) = engine.as_ref() else {
            return ticket;
        };
        let mut batch = engine.db.batch().durability(None);
        for (id, record) in changes {
            let key = id.bytes().to_vec();
            match record {
                Some(record) => batch.insert(&engine.sessions, key, record),
                None => batch.remove(&engine.sessions, key),
            }
        }
        if let Err(e) = batch.commit() {
            self.fail(&e);
        }
        ticket
    }

    async fn settle(&self, ticket: u64) -> Result<(), StoreError> {
        if self.is_broken.load(Ordering::Acquire) {
            return Err(self.refusal());
        }
        if super::memory::journal::defer(ticket) {
            return Ok(()); // settled once for the whole message, before its replies
        }
        match self.fsync {
            Fsync::Always => self.synced_to(ticket).await,
            Fsync::EverySec | Fsync::No => self.flush_to(ticket),
        }
    }

    fn needs_repair(&self) -> bool {
        self.is_broken.load(Ordering::Acquire)
    }

    fn reopen(&self) -> bool {
        let mut engine = self.engine.write();
        // A failed engine refuses everything from then on: open it again, as a restart would.
        *engine = None;
        match Engine::open(&self.dir, IN_USE) {
            Ok(opened) => {
                *engine = Some(opened);
                true
            }
            Err(reason) => {
                tracing::debug!(
                    reason,
                    "the durable store's journal cannot be opened again yet"
                );
                false
            }
        }
    }

    fn mend(&self, changes: Vec<Change>) -> bool {
        let engine = self.engine.read();
        let Some(engine) = engine.as_ref() else {
            return false;
        };
        // Every session as memory holds it: records of sessions gone meanwhile go too.
        let keep: std::collections::HashSet<[u8; 32]> =
            changes.iter().map(|(id, _)| *id.bytes()).collect();
        let mut batch = engine.db.batch().durability(Some(PersistMode::SyncData));
        for item in engine.sessions.iter() {
            let Ok(key) = item.key() else {
                return false;
            };
            if !keep.iter().any(|k| k[..] == key[..]) {
                batch.remove(&engine.sessions, key.to_vec());
            }
        }
        for (id, record) in changes {
            if let Some(record) = record {
                batch.insert(&engine.sessions, id.bytes().to_vec(), record);
            }
        }
        if batch.commit().is_err() {
            return false;
        }
        let upto = self.recorded.load(Ordering::Acquire);
        self.flushed.fetch_max(upto, Ordering::AcqRel);
        self.synced.send_modify(|s| *s = (*s).max(upto));
        *self.broken.lock() = None;
        self.is_broken.store(false, Ordering::Release);
        tracing::info!(dir = %self.dir.display(), "the durable store's journal is writable again");
        true
    }

    fn records(&self) -> Box<dyn Iterator<Item = Result<(SessionId, Bytes), StoreError>> + '_> {
        let Some(sessions) = self.engine.read().as_ref().map(|e| e.sessions.clone()) else {
            return Box::new(std::iter::once(Err(self.refusal())));
        };
        let dir = self.dir.clone();
        Box::new(sessions.iter().map(move |item| {
            let (key, value) = item.into_inner().map_err(|e| {
                StoreError::Storage(format!(
                    "data directory {}: {}; restore a backup (docs/operations.md, \"Durability\")",
                    dir.display(),
                    damaged(&e)
                ))
            })?;
            let id = <[u8; 32]>::try_from(key.as_ref())
                .map(SessionId::from_bytes)
                .map_err(|_| {
                    StoreError::Storage(format!(
                        "data directory {}: a key is no session id; restore a backup",
                        dir.display()
                    ))
                })?;
            Ok((id, Bytes::copy_from_slice(&value)))
        }))
    }

    fn backup(&self, to: &Path) -> Result<Backup, BackupError> {
        let _one = self.backing_up.try_lock().ok_or(BackupError::Busy)?;
        if self.is_broken.load(Ordering::Acquire) {
            // Memory holds writes the journal lacks: a copy of it would miss them.
            return Err(BackupError::Failed(self.refusal().to_string()));
        }
        let engine = self
            .engine
            .read()
            .clone()
            .ok_or_else(|| BackupError::Failed(self.refusal().to_string()))?;
        copy(&engine, to)
    }

    fn loaded(&self) {
        // The records a start replays from the journal sit in the memtable: to a table with
        // them, so that memory holds each session once.
        if let Some(engine) = self.engine.read().as_ref()
            && let Err(e) = engine.sessions.rotate_memtable()
        {
            tracing::debug!(error = describe(&e), "the memtable stays until it fills");
        }
    }

    fn flush(&self) {
        if let Some(engine) = self.engine.read().as_ref() {
            if let Err(e) = engine.db.persist(PersistMode::SyncAll) {
                return self.fail(&e);
            }
            // The memtable into a table, so that the next start has no journal to replay.
            if let Err(e) = engine.sessions.rotate_memtable_and_wait() {
                tracing::warn!(error = describe(&e), "the next start replays the journal");
            }
        }
    }
}

/// What to do about a data directory that another process holds open, when serving.
const IN_USE: &str = "it is in use by another session-server (or a backup): stop that one, or give another --data-dir";

impl Engine {
    /// Opens fjall at `dir`; `in_use` is the error when another process holds it.
    fn open(dir: &Path, in_use: &str) -> Result<Self, String> {
        let db = Database::builder(dir)
            // Writes are made durable by the store's own calls to `persist`.
            .manual_journal_persist(true)
            // Reads are served from memory: fjall's cache serves only the start's load.
            .cache_size(16 * 1024 * 1024)
            // Journals are kept until their writes are in tables: the fewer the smaller.
            .max_journaling_size(64 * 1024 * 1024)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => in_use.to_owned(),
                e => damaged(&e),
            })?;
        let options = || KeyspaceCreateOptions::default().max_memtable_size(16 * 1024 * 1024);
        let meta = db
            .keyspace(META, KeyspaceCreateOptions::default)
            .map_err(|e| damaged(&e))?;
        let sessions = db.keyspace(SESSIONS, options).map_err(|e| damaged(&e))?;
        Ok(Self { db, meta, sessions })
    }
}

/// Copies `dir`, a data directory no server has open, into the new directory `to`.
pub fn backup_offline(dir: &Path, to: &Path) -> Result<Backup, BackupError> {
    let failed =
        |reason: String| BackupError::Failed(format!("data directory {}: {reason}", dir.display()));
    if !dir.join("version").exists() {
        return Err(failed("it holds no session data".into()));
    }
    let engine = Engine::open(
        dir,
        "a session-server has it open: ask that server for the backup (session-server backup --addr URL, without --data-dir)",
    )
    .map_err(failed)?;
    if let Some(bytes) = engine
        .meta
        .get(KEY_FORMAT)
        .map_err(|e| failed(damaged(&e)))?
        && bytes
            .as_ref()
            .try_into()
            .map(u32::from_be_bytes)
            .unwrap_or(u32::MAX)
            > FORMAT
    {
        return Err(failed(
            "it was written by a newer session-server: back it up with that version".into(),
        ));
    }
    copy(&engine, to)
}

/// Records copied per batch of a backup: bounds what the copy holds in memory.
const BACKUP_BATCH: usize = 1024;

/// Copies one snapshot of `from` into the new directory `to`; on an error, removes what it
/// made there.
fn copy(from: &Engine, to: &Path) -> Result<Backup, BackupError> {
    let mut dir = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(to).map_err(|e| {
        let to = to.display();
        BackupError::Destination(match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!(
                    "{to} exists: give a path that does not exist yet (a backup never overwrites)"
                )
            }
            std::io::ErrorKind::NotFound => format!("{to}: its parent directory does not exist"),
            _ => format!("{to}: {}", unwritable_io(&e)),
        })
    })?;
    let copied = copy_into(from, to);
    if copied.is_err() {
        let _ = std::fs::remove_dir_all(to);
    }
    copied
}

fn copy_into(from: &Engine, to: &Path) -> Result<Backup, BackupError> {
    let failed = |e: fjall::Error| BackupError::Failed(format!("backup: {}", describe(&e)));
    let target = Engine::open(to, IN_USE)
        .map_err(|reason| BackupError::Failed(format!("{}: {reason}", to.display())))?;
    let snapshot = from.db.snapshot();
    for item in snapshot.iter(&from.meta) {
        let (key, value) = item.into_inner().map_err(failed)?;
        target.meta.insert(key, value).map_err(failed)?;
    }
    let mut copied = Backup::default();
    let mut batch = target.db.batch();
    let mut held = 0;
    for item in snapshot.iter(&from.sessions) {
        let (key, value) = item.into_inner().map_err(failed)?;
        copied.sessions += 1;
        copied.bytes += value.len() as u64;
        batch.insert(&target.sessions, key, value);
        held += 1;
        if held == BACKUP_BATCH {
            batch.commit().map_err(failed)?;
            batch = target.db.batch();
            held = 0;
        }
    }
    batch.commit().map_err(failed)?;
    target.db.persist(PersistMode::SyncAll).map_err(failed)?;
    Ok(copied)
}

/// Makes `dir` (0700) if it does not exist; refuses one that is not a directory, or that
/// holds files but no data of this server.
fn prepare(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err("it is not a directory".into()),
        Ok(_) => {
            let entries = std::fs::read_dir(dir).map_err(|e| unwritable_io(&e))?;
            // A fresh file system's mount point holds lost+found: empty all the same.
            let empty = entries
                .filter_map(Result::ok)
                .all(|e| e.file_name() == "lost+found");
            if !empty && !dir.join("version").exists() && !dir.join("lock").exists() {
                return Err(
                    "it holds files but no session data: give an empty or new directory".into(),
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| unwritable_io(&e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| unwritable_io(&e))?;
            }
            Ok(())
        }
        Err(e) => Err(unwritable_io(&e)),
    }
}

fn unwritable_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "it is not writable by this user: give it to the server's user (chown), or give another --data-dir".into()
        }
        std::io::ErrorKind::ReadOnlyFilesystem => {
            "it is not writable (a read-only file system): mount it read-write, or give another --data-dir".into()
        }
        _ => e.to_string(),
    }
}

/// Whether an engine error is the directory refusing writes rather than its contents.
fn is_unwritable(e: &fjall::Error) -> bool {
    matches!(e, fjall::Error::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    ))
}

fn unwritable(e: &fjall::Error) -> String {
    match e {
        fjall::Error::Io(io) => unwritable_io(io),
        e => describe(e),
    }
}

fn damaged(e: &fjall::Error) -> String {
    match e {
        fjall::Error::Io(io) if is_unwritable(e) => unwritable_io(io),
        fjall::Error::InvalidVersion(_) => {
            "it was written by a newer session-server (its engine's format is unknown here): run that version, or give another --data-dir".into()
        }
        e => format!(
            "it cannot be read ({}): restore a backup (docs/operations.md, \"Durability\"); the server leaves it as it is",
            describe(e)
        ),
    }
}

/// An engine error in words (fjall's `Display` is its `Debug`).
fn describe(e: &fjall::Error) -> String {
    match e {
        fjall::Error::Io(io) => io.to_string(),
        fjall::Error::Poisoned => "an earlier write failed".into(),
        e => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        apps::{AppId, Quota},
        clock::ManualClock,
        store::{
            CreateOptions, GetOutcome, GetQuery, SessionStore,
            conformance::{TempDir, set},
        },
    };

    #[derive(Debug)]
    struct Opened {
        store: Arc<DurableStore>,
        app: AppId,
    }

    fn open_at(dir: &Path, clock: &ManualClock) -> Result<Opened, OpenError> {
        open_with(dir, clock, Limits::default(), Fsync::EverySec)
    }

    fn open_with(
        dir: &Path,
        clock: &ManualClock,
        limits: Limits,
        fsync: Fsync,
    ) -> Result<Opened, OpenError> {
        let apps = Arc::new(Apps::new(Quota::default()));
        let app = apps.get_or_create("test").expect("an app").id;
        let events = Arc::new(EventLog::new(1024, 1 << 20));
        let store = open(dir, fsync, limits, Arc::new(clock.clone()), events, apps)?;
        Ok(Opened { store, app })
    }

    /// A new session holding `name` = `data`.
    async fn create(o: &Opened, name: &str, data: &'static [u8]) -> SessionId {
        let created = o
            .store
            .create(o.app, CreateOptions::default(), vec![set(name, data)]);
        created.await.expect("create").info.id
    }

    fn reopen(dir: &Path, clock: &ManualClock) -> (Opened, String) {
        let opened = open_at(dir, clock).expect("opens");
        let said = opened.store.recover().expect("loads").expect("says what");
        (opened, said)
    }

    async fn snapshot(o: &Opened, id: &SessionId) -> Option<crate::store::SessionSnapshot> {
        match o.store.get(o.app, id, GetQuery::default()).await {
            Ok(GetOutcome::Found(s)) => Some(s),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_restart_finds_every_session_as_it_was_and_nothing_that_had_ended() {
        let dir = TempDir::new();
        let clock = ManualClock::new(1_700_000_000_000);
        let o = open_at(&dir.0, &clock).expect("a new data directory");
        o.store.recover().expect("nothing to load");
        let store_id = o.store.store_id().to_owned();
        let kept = create(&o, "a", b"1").await;
        o.store
            .apply(o.app, &kept, vec![set("b", b"2")], false)
            .await
            .expect("apply");
        let moved = create(&o, "m", b"3").await;
        let rotated = o
            .store
            .rotate_id(o.app, &moved)
            .await
            .expect("rotate")
            .info
            .id;
        let ended = o
            .store
            .create(o.app, CreateOptions::default(), vec![])
            .await
            .expect("create")
            .info
            .id;
        o.store.invalidate(o.app, &ended).await.expect("invalidate");
        let before = snapshot(&o, &kept).await.expect("kept");
        drop(o);

        clock.advance(1_000);
        let (o, said) = reopen(&dir.0, &clock);
        assert!(said.contains("loaded 2 sessions"), "{said}");
        assert_eq!(o.store.store_id(), store_id, "the same store");
        let after = snapshot(&o, &kept).await.expect("the id still names it");
        assert_eq!(
            after.attributes, before.attributes,
            "with every attribute and its version"
        );
        assert_eq!(
            (after.info.version, after.info.reference),
            (before.info.version, before.info.reference)
        );
        assert_eq!(after.info.created_at_ms, before.info.created_at_ms);
        assert!(snapshot(&o, &rotated).await.is_some(), "under its new id");
        assert!(
            snapshot(&o, &moved).await.is_none(),
            "not under the old one"
        );
        assert!(
            snapshot(&o, &ended).await.is_none(),
            "nor the invalidated one"
        );
        // Deadlines survive: the idle timeout still counts from the last access.
        clock.advance(31 * 60_000 + super::super::memory::record::ACCESS_GRAIN_MS);
        assert!(snapshot(&o, &kept).await.is_none(), "idle past its timeout");
    }

    #[tokio::test]
    async fn sessions_that_expired_while_the_server_was_down_are_gone_at_start() {
        let dir = TempDir::new();
        let clock = ManualClock::new(1_700_000_000_000);
        let o = open_at(&dir.0, &clock).expect("a new data directory");
        o.store.recover().expect("nothing to load");
        let short = CreateOptions {
            idle_timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let id = o
            .store
            .create(o.app, short, vec![])
            .await
            .expect("create")
            .info
            .id;
        drop(o);
        clock.advance(10 * 60_000);
        let (o, said) = reopen(&dir.0, &clock);
        assert!(said.contains("loaded 0 sessions (1 had expired"), "{said}");
        assert!(snapshot(&o, &id).await.is_none());
        o.store.flush().await;
        drop(o);
        let (_, said) = reopen(&dir.0, &clock);
        assert!(
            said.contains("loaded 0 sessions (0 had expired"),
            "its record was removed: {said}"
        );
    }

    #[tokio::test]
    async fn an_always_write_is_answered_only_once_the_disk_has_it() {
        let dir = TempDir::new();
        let clock = ManualClock::new(1_700_000_000_000);
        let o = open_with(&dir.0, &clock, Limits::default(), Fsync::Always).expect("opens");
        o.store.recover().expect("nothing to load");
        for n in 0..20 {
            let id = create(&o, "a", b"x").await;
            let journal = o.store.journal();
            let (recorded, synced) = (
                journal.recorded.load(Ordering::Acquire),
                *journal.synced.borrow(),
            );
            assert!(
                synced >= recorded,
                "write {n}: synced {synced} < recorded {recorded}"
            );
            o.store
                .apply(o.app, &id, vec![set("b", b"y")], false)
                .await
                .expect("apply");
            let journal = o.store.journal();
            assert!(*journal.synced.borrow() >= journal.recorded.load(Ordering::Acquire));
        }
    }

    #[tokio::test]
    async fn a_restart_keeps_the_lru_order_and_a_smaller_capacity_evicts_the_least_recent() {
        let dir = TempDir::new();
        let clock = ManualClock::new(1_700_000_000_000);
        let o = open_at(&dir.0, &clock).expect("a new data directory");
        o.store.recover().expect("nothing to load");
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(create(&o, "a", b"x").await);
        }
        // Read in the order 1, 2, 0, each in a later grain: 1 is the least recently used.
        for n in [1, 2, 0] {
            clock.advance(2 * super::super::memory::record::ACCESS_GRAIN_MS);
            assert!(snapshot(&o, &ids[n]).await.is_some());
        }
        let one = o.store.usage().bytes / 3;
        drop(o);
        let limits = Limits {
            capacity_bytes: one * 2 + one / 2,
            ..Limits::default()
        };
        let o = open_with(&dir.0, &clock, limits, Fsync::EverySec).expect("opens");
        let said = o.store.recover().expect("loads").expect("says what");
        assert!(said.contains("loaded 2 sessions"), "{said}");
        assert!(
            snapshot(&o, &ids[1]).await.is_none(),
            "the least recently used went"
        );
        assert!(snapshot(&o, &ids[2]).await.is_some());
        assert!(snapshot(&o, &ids[0]).await.is_some());
        o.store.flush().await;
        drop(o);
        let (_, said) = reopen(&dir.0, &clock);
        assert!(
            said.contains("loaded 2 sessions"),
            "its eviction was kept: {said}"
        );
    }

    /// Copies a data directory, as what a power cut leaves of it may be its older self.
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("dir");
        for entry in std::fs::read_dir(from).expect("read") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).expect("copy");
            }
        }
    }

    #[tokio::test]
    async fn a_version_acknowledged_and_lost_is_never_given_to_other_contents() {
        let dir = TempDir::new();
        let clock = ManualClock::new(1_700_000_000_000);
        let o = open_at(&dir.0, &clock).expect("a new data directory");
        o.store.recover().expect("nothing to load");
        let id = create(&o, "a", b"kept").await;
        drop(o);
        // What the disk held at that point: the writes after it are the tail a power cut takes.
        let synced = TempDir::new();
        copy_dir(&dir.0, &synced.0);

        clock.advance(1_000);
        let (o, _) = reopen(&dir.0, &clock);
        let lost = o
            .store
            .apply(o.app, &id, vec![set("a", b"lost")], false)
            .await
            .expect("acknowledged");
        drop(o);
        std::fs::remove_dir_all(&dir.0).expect("remove");
        copy_dir(&synced.0, &dir.0); // the tail is gone

        clock.advance(1_000);
        let (o, _) = reopen(&dir.0, &clock);
        let back = snapshot(&o, &id)
            .await
            .expect("the session as the disk kept it");
        assert!(
            back.info.version < lost.info.version,
            "the lost write is not there"
        );
        let again = o
            .store
            .apply(o.app, &id, vec![set("a", b"other")], false)
            .await
            .expect("write");
        assert!(
            again.info.version > lost.info.version,
            "a version after the lost one ({} > {})",
            again.info.version,
            lost.info.version
        );
    }

    #[tokio::test]
    async fn a_fresh_file_systems_lost_and_found_is_no_obstacle() {
        let dir = TempDir::new();
        std::fs::create_dir_all(dir.0.join("lost+found")).expect("lost+found");
        let clock = ManualClock::new(1_700_000_000_000);
        let o = open_at(&dir.0, &clock).expect("an empty file system's mount point");
        o.store.recover().expect("nothing to load");
        let id = create(&o, "a", b"1").await;
        o.store.flush().await;
        drop(o);
        let (o, said) = reopen(&dir.0, &clock);
        assert!(said.contains("loaded 1 sessions"), "{said}");
        assert!(snapshot(&o, &id).await.is_some());
        assert!(dir.0.join("lost+found").is_dir(), "left where it was");
    }

    #[test]
    fn a_directory_of_something_else_or_of_a_newer_format_is_refused_and_left_alone() {
        let foreign = TempDir::new();
        std::fs::create_dir_all(&foreign.0).expect("dir");
        std::fs::write(foreign.0.join("notes.txt"), "mine").expect("write");
        let clock = ManualClock::new(1_700_000_000_000);
        let error = open_at(&foreign.0, &clock).expect_err("not session data");
        assert!(
            error
                .to_string()
                .contains("holds files but no session data"),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(foreign.0.join("notes.txt")).expect("read"),
            "mine"
        );

        let newer = TempDir::new();
        {
            let engine = Engine::open(&newer.0, IN_USE).expect("an engine");
            engine
                .meta
                .insert(KEY_FORMAT, (FORMAT + 1).to_be_bytes().to_vec())
                .expect("write");
            engine
                .meta
                .insert(KEY_STORE_ID, b"durable:x".to_vec())
                .expect("write");
            engine.db.persist(PersistMode::SyncAll).expect("sync");
        }
        let error = open_at(&newer.0, &clock).expect_err("a newer format");
        let line = error.to_string();
        assert!(
            line.contains("newer session-server") && !line.contains('\n'),
            "{line}"
        );

        let held = TempDir::new();
        let first = open_at(&held.0, &clock).expect("opens");
        let error = open_at(&held.0, &clock).expect_err("in use");
        assert!(
            error
                .to_string()
                .contains("in use by another session-server"),
            "{error}"
        );
        drop(first);
    }
}
