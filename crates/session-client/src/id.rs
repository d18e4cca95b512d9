//! [`SessionId`]: a session's id, which is the user's credential (it is the cookie), so it
//! never prints whole; and [`SessionRef`], the reference events name a session by instead.

use std::{fmt, ops::Deref, sync::Arc};

/// How many characters of an id `Debug` and `Display` show: enough to tell sessions apart in
/// a log, far too few to take one over.
const SHOWN: usize = 8;

/// A session id as the server made it. `Debug` and `Display` show only its first characters;
/// the whole id (for a cookie, or a call) is [`as_str`](Self::as_str), or the `str` it
/// dereferences to. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// The whole id: a credential, never to be logged.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first characters, safe to log.
    pub fn prefix(&self) -> &str {
        prefix(&self.0)
    }
}

/// The first characters of an id, safe to log.
fn prefix(id: &str) -> &str {
    let end = id.char_indices().nth(SHOWN).map_or(id.len(), |(i, _)| i);
    &id[..end]
}

/// An id held as text, shown as [`SessionId`] shows one: in spans and log lines.
pub(crate) struct Prefix<'a>(pub(crate) &'a str);

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", prefix(self.0))
    }
}

impl From<String> for SessionId {
    fn from(id: String) -> Self {
        Self(id.into())
    }
}

impl From<&str> for SessionId {
    fn from(id: &str) -> Self {
        Self(id.into())
    }
}

impl Deref for SessionId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// Hashes and compares as the text, so maps keyed by ids are looked up with a `&str`.
impl std::borrow::Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for SessionId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SessionId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Prefix(&self.0).fmt(f)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// A session's reference: random, never its id, new with every new id. Events name sessions
/// by it ([`crate::Event::reference`]), so that a watch stream never carries a credential;
/// [`crate::SessionInfo::reference`] says which session it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SessionRef(u64);

impl SessionRef {
    pub fn new(reference: u64) -> Self {
        Self(reference)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionRef({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_never_prints_whole() {
        let id = SessionId::from("abcdefghijklmnopqrstuvwxyz");
        assert_eq!(id.to_string(), "abcdefgh…");
        assert_eq!(format!("{id:?}"), "SessionId(abcdefgh…)");
        assert_eq!(id.as_str(), "abcdefghijklmnopqrstuvwxyz");
        assert_eq!(SessionId::from("ab").to_string(), "ab…");
    }
}
