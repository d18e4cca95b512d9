//! Session ids: made by the server only, 256 bits from a CSPRNG, URL-safe text.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use std::fmt;

/// Random bytes in an id: 256 bits, so ids can neither be guessed nor collide.
const ID_BYTES: usize = 32;
/// Length of the base64url text of `ID_BYTES` bytes without padding.
pub const ID_LEN: usize = 43;

/// A session id as the server made it: the random bytes themselves, so the store holds it
/// inline (32 bytes, no allocation); the text form is made when it goes on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// Makes a fresh id from the thread-local CSPRNG (ChaCha, seeded by the OS).
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Accepts text that has the shape of an id. Whether it names a live session is the
    /// store's business; text of any other shape can never name one. Only the canonical text
    /// of some bytes is accepted, so one session never has two spellings.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != ID_LEN {
            return None;
        }
        let mut bytes = [0u8; ID_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(ID_BYTES) => Some(Self(bytes)),
            _ => None,
        }
    }

    /// The id of `bytes`, as a store kept them.
    pub fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The id as clients see it: 43 base64url characters.
    pub fn text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub fn bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }
}

/// An id as a request spells it, shown as [`SessionId`] shows one (its first 8 characters:
/// the text of the 6 bytes `Display` encodes), for spans made before the id is parsed.
#[derive(Debug, Clone, Copy)]
pub struct Prefix<'a>(pub &'a str);

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self
            .0
            .char_indices()
            .nth(8)
            .map_or(self.0.len(), |(i, _)| i);
        write!(f, "{}…", &self.0[..end])
    }
}

impl fmt::Display for SessionId {
    /// Only a prefix: full ids are bearer credentials and must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", URL_SAFE_NO_PAD.encode(&self.0[..6]))
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
        assert_eq!(a.text().len(), ID_LEN);
        assert!(
            a.text()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(&a.text()), Some(a));
    }

    #[test]
    fn malformed_text_is_not_an_id() {
        assert!(SessionId::parse("").is_none());
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&"a".repeat(ID_LEN + 1)).is_none());
        assert!(SessionId::parse(&format!("{}/", "a".repeat(ID_LEN - 1))).is_none());
        // The last character carries two zero bits: with them set ('B' is 000001) the text
        // decodes to the same bytes, but only the canonical spelling is an id.
        let id = SessionId::generate().text();
        assert!(SessionId::parse(&format!("{}B", &id[..ID_LEN - 1])).is_none());
    }

    #[test]
    fn display_never_shows_the_whole_id() {
        let id = SessionId::generate();
        assert!(!format!("{id} {id:?}").contains(&id.text()));
    }
}
