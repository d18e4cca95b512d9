//! Apps: every session belongs to one (a name such as `cart`), the unit that credentials,
//! quotas and statistics are scoped to. A session of one app is `NOT_FOUND` to every other,
//! and an app's quota bounds what it may hold and how fast it may call, so that one app can
//! neither evict another's sessions nor starve it (docs/security.md).
//!
//! With authentication on, an app exists once a credential or a quota names it; without, a
//! client names its app in its handshake ([`DEFAULT_APP`] when it names none), and at most
//! [`MAX_APPS`] apps can exist, so that naming apps cannot grow the server's memory.

use parking_lot::RwLock;
use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Instant,
};

/// The app of a client that names none on a server without authentication.
pub const DEFAULT_APP: &str = "default";
/// Most apps one server knows.
pub const MAX_APPS: usize = 256;
/// Longest app name.
pub const MAX_APP_NAME: usize = 64;

/// An app's number in this server process: its place in the registry. Stores that outlive
/// the process keep the app's name instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AppId(u32);

impl AppId {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The app at `index` of a store's per-app counts.
    pub(crate) fn from_index(index: usize) -> Self {
        Self(u32::try_from(index).unwrap_or(u32::MAX))
    }

    /// The id of the `n`th app made, for tests of stores without a registry.
    #[cfg(test)]
    pub(crate) const fn for_tests(n: u32) -> Self {
        Self(n)
    }
}

/// What one app may use; `None` is no bound of the app's own (the server's still hold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Sessions the app may hold; past it, a new one evicts the app's least recently used.
    pub max_sessions: Option<u64>,
    /// Bytes the app's sessions may hold together; past it, the app's least recently used
    /// sessions are evicted.
    pub max_bytes: Option<u64>,
    /// Calls a second; calls past it (after a burst of one second's worth) answer
    /// `RESOURCE_EXHAUSTED`.
    pub rate: Option<u32>,
}

/// Why an app cannot be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error("an app name is 1 to {MAX_APP_NAME} characters of letters, digits, '-', '_' and '.'")]
    BadName,
    #[error("this server knows {MAX_APPS} apps, the most it can")]
    TooMany,
}

/// Whether `name` can name an app: short, and safe in logs, metrics labels and file lines.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_APP_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// One app: its name, its quota and the state of its rate limit.
#[derive(Debug)]
pub struct App {
    pub id: AppId,
    pub name: Arc<str>,
    quota: RwLock<Quota>,
    limiter: Limiter,
}

impl App {
    pub fn quota(&self) -> Quota {
        *self.quota.read()
    }

    fn set_quota(&self, quota: Quota) {
        *self.quota.write() = quota;
        self.limiter.set_rate(quota.rate);
    }

    /// Whether one more call fits the app's rate now.
    pub fn admit(&self) -> bool {
        self.limiter.admit()
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Every app this server knows.
#[derive(Debug)]
pub struct Apps {
    registry: RwLock<Registry>,
    /// The quota of an app that the configuration gives none of its own.
    defaults: Quota,
}

#[derive(Debug, Default)]
struct Registry {
    by_name: HashMap<Arc<str>, AppId>,
    apps: Vec<Arc<App>>,
    /// Apps whose quota the configuration names (the others have the defaults).
    configured: Vec<AppId>,
}

impl Apps {
    /// No app yet; an app's quota is `defaults` unless [`configure`](Self::configure) says
    /// otherwise.
    pub fn new(defaults: Quota) -> Self {
        Self {
            registry: RwLock::default(),
            defaults,
        }
    }

    /// The app called `name`, made on first use.
    pub fn get_or_create(&self, name: &str) -> Result<Arc<App>, AppError> {
        if let Some(app) = self.find(name) {
            return Ok(app);
        }
        if !valid_name(name) {
            return Err(AppError::BadName);
        }
        let mut registry = self.registry.write();
        if let Some(id) = registry.by_name.get(name) {
            return Ok(Arc::clone(&registry.apps[id.index()]));
        }
        if registry.apps.len() >= MAX_APPS {
            return Err(AppError::TooMany);
        }
        let id = AppId(registry.apps.len() as u32);
        let app = Arc::new(App {
            id,
            name: name.into(),
            quota: RwLock::new(self.defaults),
            limiter: Limiter::new(self.defaults.rate),
        });
        registry.by_name.insert(Arc::clone(&app.name), id);
        registry.apps.push(Arc::clone(&app));
        Ok(app)
    }

    pub fn find(&self, name: &str) -> Option<Arc<App>> {
        let registry = self.registry.read();
        let id = registry.by_name.get(name)?;
        Some(Arc::clone(&registry.apps[id.index()]))
    }

    pub fn get(&self, id: AppId) -> Option<Arc<App>> {
        self.registry.read().apps.get(id.index()).cloned()
    }

    /// `id`'s quota (the defaults for an id this registry never gave out).
    pub fn quota(&self, id: AppId) -> Quota {
        self.get(id).map_or(self.defaults, |app| app.quota())
    }

    /// Every app, in the order they were made.
    pub fn all(&self) -> Vec<Arc<App>> {
        self.registry.read().apps.clone()
    }

    /// Gives the named apps their quotas, and every other app the defaults again: what a
    /// reload of the configuration does.
    pub fn configure(&self, quotas: &[(String, Quota)]) -> Result<(), AppError> {
        let mut configured = Vec::with_capacity(quotas.len());
        for (name, quota) in quotas {
            let app = self.get_or_create(name)?;
            app.set_quota(*quota);
            configured.push(app.id);
        }
        let mut registry = self.registry.write();
        for id in std::mem::replace(&mut registry.configured, configured.clone()) {
            if !configured.contains(&id) {
                registry.apps[id.index()].set_quota(self.defaults);
            }
        }
        Ok(())
    }
}

/// A rate limit by the generic cell rate algorithm: one atomic, the time at which the app's
/// calls so far would have been spread out at its rate; a call is admitted while that time is
/// within a second of now. No timer, no lock, no per-call allocation.
#[derive(Debug)]
struct Limiter {
    /// Calls a second; 0 is no limit.
    rate: AtomicU32,
    /// Nanoseconds since `start` by which the calls admitted so far are paid for.
    paid_until: AtomicU64,
    start: Instant,
}

/// The burst a limit allows: a second's worth of calls at once.
const BURST_NS: u64 = 1_000_000_000;

impl Limiter {
    fn new(rate: Option<u32>) -> Self {
        Self {
            rate: AtomicU32::new(rate.unwrap_or(0)),
            paid_until: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    fn set_rate(&self, rate: Option<u32>) {
        self.rate.store(rate.unwrap_or(0), Ordering::Relaxed);
    }

    fn admit(&self) -> bool {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return true;
        }
        self.admit_at(rate, self.start.elapsed().as_nanos() as u64)
    }

    fn admit_at(&self, rate: u32, now: u64) -> bool {
        let cost = (BURST_NS / u64::from(rate)).max(1);
        let mut paid = self.paid_until.load(Ordering::Relaxed);
        loop {
            let from = paid.max(now);
            if from + cost > now + BURST_NS {
                return false;
            }
            match self.paid_until.compare_exchange_weak(
                paid,
                from + cost,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => paid = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_admits_a_seconds_burst_then_its_rate() {
        let limiter = Limiter::new(Some(10));
        let admitted = (0..100).filter(|_| limiter.admit_at(10, 0)).count();
        assert_eq!(admitted, 10, "a burst of one second's worth");
        assert!(
            !limiter.admit_at(10, 50_000_000),
            "nothing more until paid for"
        );
        assert!(
            limiter.admit_at(10, 100_000_000),
            "a tenth of a second later, one more"
        );
        assert!(!limiter.admit_at(10, 100_000_000));
        let later = 10 * BURST_NS;
        assert_eq!((0..100).filter(|_| limiter.admit_at(10, later)).count(), 10);
    }

    #[test]
    fn apps_are_made_once_named_well_and_bounded_in_number() {
        let apps = Apps::new(Quota::default());
        let cart = apps.get_or_create("cart").expect("a good name");
        assert_eq!(apps.get_or_create("cart").expect("again").id, cart.id);
        let refused = |name: &str| apps.get_or_create(name).err();
        assert_eq!(refused(""), Some(AppError::BadName));
        assert_eq!(refused("a b"), Some(AppError::BadName));
        assert_eq!(refused(&"x".repeat(65)), Some(AppError::BadName));
        for i in 1..MAX_APPS {
            apps.get_or_create(&format!("app{i}")).expect("room");
        }
        assert_eq!(refused("one-more"), Some(AppError::TooMany));
        assert!(apps.find("app1").is_some());
    }

    #[test]
    fn a_reload_gives_apps_it_no_longer_names_the_defaults() {
        let defaults = Quota {
            rate: Some(5),
            ..Quota::default()
        };
        let apps = Apps::new(defaults);
        let quota = Quota {
            max_sessions: Some(10),
            max_bytes: Some(1 << 20),
            rate: None,
        };
        apps.configure(&[("cart".into(), quota)]).expect("valid");
        let cart = apps.find("cart").expect("made by its quota");
        assert_eq!(cart.quota(), quota);
        assert!((0..100).all(|_| cart.admit()), "no rate limit of its own");
        apps.configure(&[]).expect("valid");
        assert_eq!(cart.quota(), defaults);
    }
}
