//! CSRF tokens that need no server session: an anonymous page view must not create one, or
//! a crawler could fill the session server and evict real shoppers' carts.
//!
//! A browser gets a random nonce in a cookie of its own ([`COOKIE`]); each form carries
//! `HMAC-SHA256(key, nonce)`. A POST passes when its token matches its cookie's nonce, which
//! a cross-site page can neither read nor forge without the key. From its first write a
//! session keeps the nonce (the `csrf` attribute), and later POSTs must bring that one: a
//! planted cookie cannot ride on someone else's session. When the session has ended, the
//! cookie and the token still have to match, and the add starts a new session.

use actix_web::{
    HttpRequest,
    cookie::{Cookie, SameSite},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::{fmt, path::Path};

/// The cookie that holds a browser's nonce.
pub const COOKIE: &str = "cart_csrf";

/// Shortest key accepted: 32 bytes is SHA-256's own strength.
pub const MIN_KEY_LEN: usize = 32;

/// The key tokens are made with. Every instance behind one address must share it, and keep it
/// across restarts, or pages left open get tokens that no longer match.
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

/// Never shows the key.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("csrf::Key(..)")
    }
}

impl Key {
    pub fn new(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() < MIN_KEY_LEN {
            return Err(format!(
                "the CSRF key must be at least {MIN_KEY_LEN} characters long (for example 43 random base64 characters)"
            ));
        }
        // Keyed once here: a token then costs one copy of the keyed state, and HMAC takes a
        // key of any length, so this never fails.
        <Hmac<Sha256> as Mac>::new_from_slice(text.as_bytes())
            .map(Self)
            .map_err(|e| format!("the CSRF key cannot key HMAC-SHA256: {e}"))
    }

    /// A key of this process only: tokens break across restarts and between instances.
    pub fn random() -> Self {
        // A key of HMAC-SHA256's block size, which its fixed-size constructor takes whole.
        Self(<Hmac<Sha256> as hmac::digest::KeyInit>::new(
            &random_bytes::<64>().into(),
        ))
    }

    /// The key in `path`, made there first if the file does not exist (mode 0600). Several
    /// instances starting together agree: the file appears whole or not at all.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let failed = |e: std::io::Error| format!("CSRF key file {}: {e}", path.display());
        let key = format!("{}\n", session_server::secrets::random_token());
        if session_server::secrets::write_new(path, &key).map_err(failed)? {
            tracing::info!(path = %path.display(), "made a new CSRF key");
        }
        let text = std::fs::read_to_string(path).map_err(failed)?;
        Self::new(&text).map_err(|e| format!("CSRF key file {}: {e}", path.display()))
    }

    /// The token a page carries for `nonce`.
    pub fn token(&self, nonce: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(nonce).finalize().into_bytes())
    }

    /// Whether `token` was made for `nonce`, compared in constant time.
    pub fn verify(&self, nonce: &str, token: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(token)
            .is_ok_and(|tag| self.mac(nonce).verify_slice(&tag).is_ok())
    }

    fn mac(&self, nonce: &str) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(nonce.as_bytes());
        mac
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A new nonce: 128 random bits.
pub fn new_nonce() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

/// The nonce the browser's cookie holds, if it looks like one of ours.
pub fn cookie_nonce(req: &HttpRequest) -> Option<String> {
    let value = req.cookie(COOKIE)?.value().to_owned();
    let plausible = (16..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plausible.then_some(value)
}

/// The cookie that gives the browser `nonce`.
pub fn cookie(nonce: String, secure: bool) -> Cookie<'static> {
    Cookie::build(COOKIE, nonce)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_its_nonce_and_key_only() {
        let key = Key::new("0123456789abcdef0123456789abcdef").expect("key");
        let other = Key::random();
        let nonce = new_nonce();
        let token = key.token(&nonce);
        assert!(key.verify(&nonce, &token));
        assert!(!key.verify(&new_nonce(), &token));
        assert!(!other.verify(&nonce, &token));
        assert!(!key.verify(&nonce, "not base64 !"));
        assert!(!key.verify(&nonce, ""));
        assert!(Key::new("short").is_err());
        assert_eq!(format!("{key:?}"), "csrf::Key(..)");
    }

    #[test]
    fn a_key_file_is_made_once_and_then_read() {
        let dir = std::env::temp_dir().join(format!("cart-csrf-{}", new_nonce()));
        std::fs::create_dir(&dir).expect("dir");
        let path = dir.join("csrf.key");
        let made = Key::from_file(&path).expect("made");
        let read = Key::from_file(&path).expect("read");
        assert_eq!(made.token("nonce"), read.token("nonce"), "the same key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
