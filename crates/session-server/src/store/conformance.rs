//! The storage contract's semantics, one suite every store runs through the trait: the core
//! that every store must keep, then each capability a store declares
//! ([`SessionStore::capabilities`]). Time is a [`ManualClock`]: no test sleeps.
//!
//! A store joins with a [`Maker`] and one line of [`conformance!`] at the bottom.

use super::{
    Capability, CreateOptions, GetOutcome, GetQuery, LimitKind, Limits, OpKind, Operation,
    SessionStore, StoreError, Value,
};
use crate::{
    apps::{AppId, Apps, Quota},
    clock::{Clock, ManualClock},
    events::{EventKind, EventLog, WatchItem},
    id::SessionId,
};
use bytes::Bytes;
use futures_util::StreamExt;
use std::{any::Any, sync::Arc, time::Duration};

const MINUTE: u64 = 60_000;

/// A store under test, with the clock it runs on, the log its events go to and its apps.
pub(crate) struct Subject<S> {
    pub store: Arc<S>,
    pub clock: ManualClock,
    pub events: Arc<EventLog>,
    pub apps: Arc<Apps>,
    /// Whatever must outlive the store (a data directory).
    pub _keep: Option<Box<dyn Any + Send>>,
}

/// Makes a fresh store of one kind.
pub(crate) trait Maker {
    type Store: SessionStore;

    fn make(&self, limits: Limits, apps: Arc<Apps>) -> Subject<Self::Store>;
}

/// The parts every maker shares: a clock at a fixed time, an event log.
pub(crate) fn parts() -> (ManualClock, Arc<dyn Clock>, Arc<EventLog>) {
    let clock = ManualClock::new(1_700_000_000_000);
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    (clock, shared, Arc::new(EventLog::new(4096, 8 << 20)))
}

fn apps() -> Arc<Apps> {
    Arc::new(Apps::new(Quota::default()))
}

fn make<M: Maker>(maker: &M) -> (Subject<M::Store>, AppId) {
    make_with(maker, Limits::default())
}

fn make_with<M: Maker>(maker: &M, limits: Limits) -> (Subject<M::Store>, AppId) {
    let apps = apps();
    let app = apps.get_or_create("test").expect("an app").id;
    (maker.make(limits, apps), app)
}

/// A set of a text value, for the stores' own tests too.
pub(crate) fn set(name: &str, data: &'static [u8]) -> Operation {
    op(
        name,
        OpKind::Set {
            value: Value::Bytes {
                content_type: "text/plain".into(),
                data: Bytes::from_static(data),
            },
            expected_version: None,
        },
    )
}

pub(crate) fn op(name: &str, kind: OpKind) -> Operation {
    Operation {
        name: name.into(),
        kind,
    }
}

fn counter(delta: i64, min: Option<i64>, max: Option<i64>, remove_at_zero: bool) -> OpKind {
    OpKind::CounterAdd {
        delta,
        min,
        max,
        remove_at_zero,
    }
}

async fn create<S: SessionStore>(s: &Subject<S>, app: AppId, ops: Vec<Operation>) -> SessionId {
    s.store
        .create(app, CreateOptions::default(), ops)
        .await
        .expect("create")
        .info
        .id
}

async fn found<S: SessionStore>(
    s: &Subject<S>,
    app: AppId,
    id: &SessionId,
) -> Result<super::SessionSnapshot, StoreError> {
    match s.store.get(app, id, GetQuery::default()).await? {
        GetOutcome::Found(snapshot) => Ok(snapshot),
        GetOutcome::NotModified(_) => panic!("not modified without a known version"),
    }
}

async fn list<S: SessionStore>(
    s: &Subject<S>,
    app: AppId,
    id: &SessionId,
    name: &str,
) -> Vec<Bytes> {
    match found(s, app, id).await.expect("get").attributes.get(name) {
        Some(a) => match &a.value {
            Value::List { items, .. } => items.clone(),
            other => panic!("not a list: {other:?}"),
        },
        None => Vec::new(),
    }
}

// The core.

pub(crate) async fn idle_sessions_are_not_found_at_once_without_a_sweep<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let id = create(&s, app, vec![set("a", b"1")]).await;
    s.clock.advance(29 * MINUTE);
    assert!(
        found(&s, app, &id).await.is_ok(),
        "an access within the idle timeout"
    );
    s.clock.advance(29 * MINUTE);
    assert!(
        found(&s, app, &id).await.is_ok(),
        "the access above refreshed it"
    );
    s.clock.advance(30 * MINUTE);
    assert_eq!(
        found(&s, app, &id).await.map(drop),
        Err(StoreError::NotFound)
    );
    let write = s.store.apply(app, &id, vec![set("a", b"2")], false).await;
    assert_eq!(write.map(drop), Err(StoreError::NotFound));
    assert_eq!(
        s.store.usage().sessions,
        0,
        "expired on access, before any sweep"
    );
}

pub(crate) async fn the_lifetime_ends_even_a_busy_session<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let id = create(&s, app, vec![]).await;
    for _ in 0..(8 * 60 / 20) - 1 {
        s.clock.advance(20 * MINUTE);
        found(&s, app, &id)
            .await
            .expect("still within its lifetime");
    }
    s.clock.advance(20 * MINUTE);
    assert_eq!(
        found(&s, app, &id).await.map(drop),
        Err(StoreError::NotFound)
    );
}

pub(crate) async fn per_session_timeouts_override_the_defaults<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let options = CreateOptions {
        idle_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let id = s
        .store
        .create(app, options, vec![])
        .await
        .expect("create")
        .info
        .id;
    s.clock.advance(5_000);
    assert_eq!(
        found(&s, app, &id).await.map(drop),
        Err(StoreError::NotFound)
    );
}

pub(crate) async fn a_failed_batch_changes_nothing<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let id = create(&s, app, vec![set("a", b"1")]).await;
    let before = found(&s, app, &id).await.expect("get");
    let batch = vec![set("a", b"2"), op("n", counter(-1, Some(0), None, false))];
    assert!(matches!(
        s.store.apply(app, &id, batch, false).await,
        Err(StoreError::OutOfRange { index: 1, .. })
    ));
    let after = found(&s, app, &id).await.expect("get");
    assert_eq!(after.info.version, before.info.version);
    assert_eq!(after.attributes, before.attributes);
}

pub(crate) async fn versions_grow_with_every_change_and_only_then<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let id = create(&s, app, vec![set("a", b"1")]).await;
    let first = found(&s, app, &id).await.expect("get").info.version;
    let changed = s
        .store
        .apply(app, &id, vec![set("b", b"2")], false)
        .await
        .expect("apply");
    assert!(changed.info.version > first);
    let attribute = &found(&s, app, &id).await.expect("get").attributes["b"];
    assert_eq!(
        attribute.version, changed.info.version,
        "an attribute's version is its write's"
    );
    let remove = op(
        "nothing",
        OpKind::Remove {
            expected_version: None,
        },
    );
    let unchanged = s
        .store
        .apply(app, &id, vec![remove], false)
        .await
        .expect("apply");
    assert_eq!(
        unchanged.info.version, changed.info.version,
        "a batch that changes nothing"
    );
}

pub(crate) async fn compare_and_set_reports_the_current_attribute<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let id = create(&s, app, vec![set("a", b"1")]).await;
    let current = found(&s, app, &id).await.expect("get").attributes["a"].version;
    let stale = op(
        "a",
        OpKind::Set {
            value: Value::Counter(5),
            expected_version: Some(0),
        },
    );
    match s.store.apply(app, &id, vec![stale], false).await {
        Err(StoreError::Conflict {
            index: 0,
            name,
            current: Some(now),
        }) => {
            assert_eq!(name, "a");
            assert_eq!(now.version, current);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let fresh = op(
        "a",
        OpKind::Set {
            value: Value::Counter(5),
            expected_version: Some(current),
        },
    );
    let out = s
        .store
        .apply(app, &id, vec![fresh], false)
        .await
        .expect("matching version");
    assert!(out.results[0].attribute_version > current);
}

pub(crate) async fn list_operations_keep_order_and_bounds<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let push = |item: &'static [u8]| {
        op(
            "l",
            OpKind::ListPush {
                item: Bytes::from_static(item),
                content_type: "t".into(),
                max_len: Some(3),
            },
        )
    };
    let id = create(&s, app, vec![push(b"x"), push(b"y"), push(b"x")]).await;
    assert!(matches!(
        s.store.apply(app, &id, vec![push(b"z")], false).await,
        Err(StoreError::OutOfRange { .. })
    ));
    let remove = |item: &'static [u8]| {
        op(
            "l",
            OpKind::ListRemove {
                item: Bytes::from_static(item),
            },
        )
    };
    let out = s
        .store
        .apply(app, &id, vec![remove(b"x")], false)
        .await
        .expect("remove");
    assert!(out.results[0].removed);
    assert_eq!(
        list(&s, app, &id, "l").await,
        vec![Bytes::from_static(b"y"), Bytes::from_static(b"x")]
    );
    let miss = s
        .store
        .apply(app, &id, vec![remove(b"q")], false)
        .await
        .expect("miss");
    assert!(!miss.results[0].removed);
    assert_eq!(
        miss.info.version, out.info.version,
        "a no-op does not bump the version"
    );
}

pub(crate) async fn recent_push_moves_to_front_without_duplicates<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let id = create(&s, app, vec![]).await;
    for item in [b"a", b"b", b"c", b"a", b"d"] {
        let recent = op(
            "h",
            OpKind::RecentPush {
                item: Bytes::copy_from_slice(item),
                content_type: "t".into(),
                keep: 3,
            },
        );
        s.store
            .apply(app, &id, vec![recent], false)
            .await
            .expect("push");
    }
    let items: Vec<_> = list(&s, app, &id, "h").await.iter().map(|b| b[0]).collect();
    assert_eq!(items, b"dac");
}

pub(crate) async fn counters_add_within_their_bounds_and_may_vanish_at_zero<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let id = create(&s, app, vec![op("n", counter(2, None, None, false))]).await;
    let added = s
        .store
        .apply(
            app,
            &id,
            vec![op("n", counter(3, None, Some(5), false))],
            false,
        )
        .await
        .expect("add");
    assert_eq!(added.results[0].counter, 5);
    assert!(matches!(
        s.store
            .apply(
                app,
                &id,
                vec![op("n", counter(1, None, Some(5), false))],
                false
            )
            .await,
        Err(StoreError::OutOfRange { .. })
    ));
    s.store
        .apply(
            app,
            &id,
            vec![op("n", counter(-5, Some(0), None, true))],
            false,
        )
        .await
        .expect("down to zero");
    assert!(
        !found(&s, app, &id)
            .await
            .expect("get")
            .attributes
            .contains_key("n")
    );
}

pub(crate) async fn a_kind_of_value_an_operation_does_not_take_is_refused<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let id = create(&s, app, vec![set("a", b"1")]).await;
    assert!(matches!(
        s.store
            .apply(
                app,
                &id,
                vec![op("a", counter(1, None, None, false))],
                false
            )
            .await,
        Err(StoreError::WrongType { found: "bytes", .. })
    ));
}

pub(crate) async fn limits_name_themselves<M: Maker>(m: &M) {
    let limits = Limits {
        max_session_bytes: 2_000,
        max_attribute_bytes: 1_000,
        ..Limits::default()
    };
    let (s, app) = make_with(m, limits);
    let value = |len: usize| Value::Bytes {
        content_type: "".into(),
        data: Bytes::from(vec![0; len]),
    };
    let big = op(
        "big",
        OpKind::Set {
            value: value(1_000),
            expected_version: None,
        },
    );
    assert!(matches!(
        s.store
            .create(app, CreateOptions::default(), vec![big])
            .await,
        Err(StoreError::LimitExceeded {
            which: LimitKind::Attribute,
            ..
        })
    ));
    let id = create(&s, app, vec![]).await;
    let parts: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            op(
                n,
                OpKind::Set {
                    value: value(800),
                    expected_version: None,
                },
            )
        })
        .collect();
    assert!(matches!(
        s.store.apply(app, &id, parts, false).await,
        Err(StoreError::LimitExceeded {
            which: LimitKind::Session,
            ..
        })
    ));
}

pub(crate) async fn invalidated_and_rotated_ids_name_nothing_and_nothing_comes_back<M: Maker>(
    m: &M,
) {
    let (s, app) = make(m);
    let id = create(&s, app, vec![set("a", b"1")]).await;
    let before = found(&s, app, &id).await.expect("get");
    let rotated = s.store.rotate_id(app, &id).await.expect("rotate");
    assert_ne!(rotated.info.id, id);
    assert_ne!(
        rotated.info.reference, rotated.previous_reference,
        "a new reference too"
    );
    assert_eq!(rotated.previous_reference, before.info.reference);
    assert_eq!(
        found(&s, app, &id).await.map(drop),
        Err(StoreError::NotFound)
    );
    let write = s.store.apply(app, &id, vec![set("b", b"2")], false).await;
    assert_eq!(
        write.map(drop),
        Err(StoreError::NotFound),
        "no write brings the old id back"
    );
    let moved = found(&s, app, &rotated.info.id)
        .await
        .expect("the data moved");
    assert_eq!(moved.attributes, before.attributes);

    let reference = s
        .store
        .invalidate(app, &rotated.info.id)
        .await
        .expect("invalidate");
    assert_eq!(reference, rotated.info.reference);
    assert_eq!(
        found(&s, app, &rotated.info.id).await.map(drop),
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.store.invalidate(app, &rotated.info.id).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.store.usage().sessions, 0);
}

pub(crate) async fn not_modified_when_the_version_is_known<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let id = create(&s, app, vec![set("a", b"1")]).await;
    let version = found(&s, app, &id).await.expect("get").info.version;
    let q = GetQuery {
        names: vec![],
        known_version: Some(version),
    };
    assert!(matches!(
        s.store.get(app, &id, q).await,
        Ok(GetOutcome::NotModified(_))
    ));
}

pub(crate) async fn another_apps_session_is_not_found_and_left_as_it_was<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let other = s.apps.get_or_create("other").expect("an app").id;
    let id = create(&s, app, vec![set("a", b"1")]).await;
    let before = found(&s, app, &id).await.expect("get");
    assert_eq!(
        found(&s, other, &id).await.map(drop),
        Err(StoreError::NotFound)
    );
    let write = s.store.apply(other, &id, vec![set("a", b"2")], false).await;
    assert_eq!(write.map(drop), Err(StoreError::NotFound));
    assert_eq!(
        s.store.invalidate(other, &id).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.store.rotate_id(other, &id).await.map(drop),
        Err(StoreError::NotFound)
    );
    let after = found(&s, app, &id).await.expect("its own");
    assert_eq!(
        (after.info.version, after.attributes),
        (before.info.version, before.attributes)
    );
}

pub(crate) async fn events_follow_commit_order_with_each_write_s_version<M: Maker>(m: &M) {
    let (s, app) = make(m);
    let watch = s.events.watch(app, None, 0);
    futures_util::pin_mut!(watch);
    assert!(matches!(watch.next().await, Some(WatchItem::Hello(_))));
    let created = s
        .store
        .create(app, CreateOptions::default(), vec![])
        .await
        .expect("create");
    let id = created.info.id;
    let mut versions = vec![created.info.version];
    for n in 0..5 {
        let written = s
            .store
            .apply(
                app,
                &id,
                vec![op("n", counter(n, None, None, false))],
                false,
            )
            .await
            .expect("apply");
        versions.push(written.info.version);
    }
    let rotated = s.store.rotate_id(app, &id).await.expect("rotate");
    let mut seen = Vec::new();
    while seen.len() < 7 {
        match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
            Ok(Some(WatchItem::Event(e))) => seen.push(e),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    assert_eq!(seen[0].kind, EventKind::Created);
    assert!(seen[1..6].iter().all(|e| e.kind == EventKind::Changed));
    assert_eq!(seen[6].kind, EventKind::IdRotated);
    let event_versions: Vec<u64> = seen[..6].iter().map(|e| e.version).collect();
    assert_eq!(
        event_versions, versions,
        "each event carries its write's version, in order"
    );
    assert!(seen.iter().all(|e| e.reference == created.info.reference));
    assert_eq!(seen[6].new_reference, rotated.info.reference);
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
}

// Capability: exact eviction.

fn small(capacity: u64) -> Limits {
    Limits {
        capacity_bytes: capacity,
        max_session_bytes: 5_000,
        max_attribute_bytes: 5_000,
        ..Limits::default()
    }
}

async fn held<S: SessionStore>(s: &Subject<S>, app: AppId, ids: &[SessionId]) -> usize {
    let mut held = 0;
    for id in ids {
        if found(s, app, id).await.is_ok() {
            held += 1;
        }
    }
    held
}

fn declares<S: SessionStore>(s: &Subject<S>, capability: Capability) -> bool {
    s.store.capabilities().contains(&capability)
}

pub(crate) async fn least_recently_used_sessions_are_evicted_at_capacity<M: Maker>(m: &M) {
    let (s, app) = make_with(m, small(10_000));
    if !declares(&s, Capability::ExactEviction) {
        return;
    }
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(create(&s, app, vec![set("a", &[0; 400])]).await);
    }
    assert!(s.store.usage().bytes <= 10_000);
    let held_now = s.store.usage().sessions as usize;
    assert!(held_now < 20 && held_now > 5, "held {held_now}");
    assert_eq!(s.events.count(EventKind::Evicted) as usize, 20 - held_now);
    // The newest survive; reading one keeps it from being the next victim.
    let survivor = ids[20 - held_now];
    found(&s, app, &survivor).await.expect("held");
    create(&s, app, vec![set("a", &[0; 400])]).await;
    assert!(
        found(&s, app, &survivor).await.is_ok(),
        "recently used, not evicted"
    );
    assert_eq!(
        found(&s, app, &ids[0]).await.map(drop),
        Err(StoreError::NotFound)
    );
}

pub(crate) async fn past_capacity_the_app_holding_the_most_gives_way_first<M: Maker>(m: &M) {
    let (s, big) = make_with(m, small(10_000));
    if !declares(&s, Capability::ExactEviction) {
        return;
    }
    let little = s.apps.get_or_create("little").expect("an app").id;
    let mut bigs = Vec::new();
    for _ in 0..15 {
        bigs.push(create(&s, big, vec![set("a", &[0; 400])]).await);
    }
    let mut littles = Vec::new();
    for _ in 0..4 {
        littles.push(create(&s, little, vec![set("a", &[0; 400])]).await);
    }
    assert_eq!(
        held(&s, little, &littles).await,
        4,
        "its growth evicts the larger app's"
    );
    assert!(held(&s, big, &bigs).await < 15);
    let usage = s.store.usage_by_app();
    assert!(usage[big.index()].bytes > usage[little.index()].bytes);
    assert!(s.store.usage().bytes <= 10_000);
    // The other way round: the large app's growth evicts its own, not the small one's.
    for _ in 0..30 {
        create(&s, big, vec![set("a", &[0; 400])]).await;
    }
    assert_eq!(held(&s, little, &littles).await, 4);
}

pub(crate) async fn an_apps_quota_evicts_its_own_least_recently_used_sessions_only<M: Maker>(
    m: &M,
) {
    let apps = apps();
    let shop = apps.get_or_create("shop").expect("an app").id;
    let cart = apps.get_or_create("cart").expect("an app").id;
    let quota = Quota {
        max_bytes: Some(3_000),
        max_sessions: Some(4),
        rate: None,
    };
    apps.configure(&[("shop".into(), quota)]).expect("valid");
    let s = m.make(small(1 << 20), apps);
    if !declares(&s, Capability::ExactEviction) {
        return;
    }
    let (mut carts, mut shops) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        carts.push(create(&s, cart, vec![set("a", &[0; 400])]).await);
    }
    for _ in 0..10 {
        shops.push(create(&s, shop, vec![set("a", &[0; 400])]).await);
    }
    assert_eq!(
        held(&s, cart, &carts).await,
        10,
        "no quota of its own, nothing evicted"
    );
    assert_eq!(held(&s, shop, &shops).await, 4, "at most four sessions");
    assert_eq!(held(&s, shop, &shops[6..]).await, 4, "the newest");
    let before = s.store.usage_by_app()[shop.index()];
    s.store
        .apply(shop, &shops[9], vec![set("b", &[0; 2_000])], false)
        .await
        .expect("grows");
    let after = s.store.usage_by_app()[shop.index()];
    assert!(
        after.bytes <= 3_000 && after.sessions < before.sessions,
        "{after:?}"
    );
    assert!(
        found(&s, shop, &shops[9]).await.is_ok(),
        "the one written stays"
    );
}

/// The suite for one store: `conformance!(module_name, maker)` makes a test of each.
macro_rules! conformance {
    ($module:ident, $maker:expr) => {
        mod $module {
            use super::*;
            conformance!(@tests $maker;
                idle_sessions_are_not_found_at_once_without_a_sweep,
                the_lifetime_ends_even_a_busy_session,
                per_session_timeouts_override_the_defaults,
                a_failed_batch_changes_nothing,
                versions_grow_with_every_change_and_only_then,
                compare_and_set_reports_the_current_attribute,
                list_operations_keep_order_and_bounds,
                recent_push_moves_to_front_without_duplicates,
                counters_add_within_their_bounds_and_may_vanish_at_zero,
                a_kind_of_value_an_operation_does_not_take_is_refused,
                limits_name_themselves,
                invalidated_and_rotated_ids_name_nothing_and_nothing_comes_back,
                not_modified_when_the_version_is_known,
                another_apps_session_is_not_found_and_left_as_it_was,
                events_follow_commit_order_with_each_write_s_version,
                least_recently_used_sessions_are_evicted_at_capacity,
                past_capacity_the_app_holding_the_most_gives_way_first,
                an_apps_quota_evicts_its_own_least_recently_used_sessions_only,
            );
        }
    };
    (@tests $maker:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                super::$test(&$maker).await
            }
        )*
    };
}

/// The memory store.
pub(crate) struct Memory;

impl Maker for Memory {
    type Store = super::memory::MemoryStore;

    fn make(&self, limits: Limits, apps: Arc<Apps>) -> Subject<Self::Store> {
        let (clock, shared, events) = parts();
        let store =
            super::memory::MemoryStore::new(limits, shared, Arc::clone(&events), Arc::clone(&apps));
        Subject {
            store: Arc::new(store),
            clock,
            events,
            apps,
            _keep: None,
        }
    }
}

/// The durable store, each in a data directory of its own, removed with it.
pub(crate) struct Durable(pub super::durable::Fsync);

/// A directory removed on drop.
pub(crate) struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("durable-{}", crate::secrets::random_token()));
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Maker for Durable {
    type Store = super::durable::DurableStore;

    fn make(&self, limits: Limits, apps: Arc<Apps>) -> Subject<Self::Store> {
        let (clock, shared, events) = parts();
        let dir = TempDir::new();
        let store = super::durable::open(
            &dir.0,
            self.0,
            limits,
            shared,
            Arc::clone(&events),
            Arc::clone(&apps),
        )
        .expect("a new data directory");
        store.recover().expect("nothing to load");
        Subject {
            store,
            clock,
            events,
            apps,
            _keep: Some(Box::new(dir)),
        }
    }
}

conformance!(memory, Memory);
conformance!(
    durable_everysec,
    Durable(super::super::durable::Fsync::EverySec)
);
conformance!(
    durable_always,
    Durable(super::super::durable::Fsync::Always)
);
