//! Session ids: made by the server only, 256 bits from a CSPRNG, URL-safe text.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use std::{fmt, sync::Arc};

/// Random bytes in an id: 256 bits, so ids can neither be guessed nor collide.
const ID_BYTES: usize = 32;
/// Length of the base64url text of `ID_BYTES` bytes without padding.
pub const ID_LEN: usize = 43;

/// A session id as the server made it. Cheap to clone: the store's map and expiry index
/// share one allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// Makes a fresh id from the thread-local CSPRNG (ChaCha, seeded by the OS).
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes).into())
    }

    /// Accepts text that has the shape of an id. Whether it names a live session is the
    /// store's business; text of any other shape can never name one.
    pub fn parse(text: &str) -> Option<Self> {
        let well_formed = text.len() == ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    /// Only a prefix: full ids are bearer credentials and must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.0[..8])
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_url_safe_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_eq!(a.as_str().len(), ID_LEN);
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn malformed_text_is_not_an_id() {
        assert!(SessionId::parse("").is_none());
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&"a".repeat(ID_LEN + 1)).is_none());
        assert!(SessionId::parse(&format!("{}/", "a".repeat(ID_LEN - 1))).is_none());
    }

    #[test]
    fn display_never_shows_the_whole_id() {
        let id = SessionId::generate();
        assert!(!format!("{id} {id:?}").contains(id.as_str()));
    }
}
