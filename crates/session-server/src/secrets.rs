//! Secret files: tokens and keys, made once with a random value and kept (mode 0600), so that
//! every process that reads one agrees, however many start at once. The cart's CSRF key and
//! `session-server setup`'s tokens are made here.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use std::{io::Write, path::Path};

/// A new random secret: 256 bits as 43 base64url characters.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes `text` to `path` (mode 0600) unless the file exists; whether it made it. The file
/// appears whole or not at all: it is written aside, then linked into place, and a link
/// fails if another process made the file meanwhile (then that one stands).
pub fn write_new(path: &Path, text: &str) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_made_once_and_private() {
        let dir = std::env::temp_dir().join(format!("secrets-{}", random_token()));
        std::fs::create_dir(&dir).expect("dir");
        let path = dir.join("token");
        assert!(write_new(&path, "first\n").expect("made"));
        assert!(!write_new(&path, "second\n").expect("kept"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "first\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 43);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
