//! First-run set-up for the sample and for development (feature `server`):
//! `session-server setup` makes what is missing under a directory (an app token per app, an
//! admin token, the credentials file that names them, the carts' CSRF key and, with
//! `--tls`, a development CA and certificates), and `session-server dev-cert` the
//! certificates alone. What exists is kept, so every later run finds the same secrets.
//!
//! Files are mode 0600 and, when this makes the directory, it is 0700. The credentials file
//! holds only the tokens' SHA-256 digests; each token is in a file of its own, for the
//! client that presents it.

use crate::{
    auth::digest_line,
    secrets::{random_token, write_new},
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// The credentials file `setup` writes.
pub const AUTH_FILE: &str = "auth";
/// The CSRF key file `setup` writes, in the cart's format.
pub const CSRF_KEY_FILE: &str = "csrf.key";
/// The development CA clients trust.
pub const CA_FILE: &str = "ca.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server.key";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{0:?} is not an app name (letters, digits, '-', '_' and '.')")]
    BadApp(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |error| SetupError::Io {
        path: path.to_owned(),
        error,
    }
}

/// What `setup` is asked to make.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// An app token for each (`<app>.token`).
    pub apps: Vec<String>,
    /// An admin token too (`admin.token`).
    pub admin: bool,
    /// Host names and addresses of the server certificate; `None`: no certificates.
    pub tls_names: Option<Vec<String>>,
}

/// Makes what `what` names and `dir` lacks; returns a line per file made or kept.
pub fn setup(dir: &Path, what: &Setup) -> Result<Vec<String>, SetupError> {
    let mut report = Vec::new();
    make_dir(dir)?;
    let mut holders: Vec<(String, String)> = Vec::new();
    for app in &what.apps {
        if !crate::apps::valid_name(app) {
            return Err(SetupError::BadApp(app.clone()));
        }
        holders.push((format!("{app}.token"), format!("app:{app}")));
    }
    if what.admin {
        holders.push(("admin.token".into(), "admin".into()));
    }
    let auth = dir.join(AUTH_FILE);
    for (file, who) in holders {
        let path = dir.join(&file);
        let made = write_new(&path, &format!("{}\n", random_token())).map_err(io(&path))?;
        let token = crate::auth::read_token_file(&path).map_err(io(&path))?;
        let line = format!("{who} {}\n", digest_line(&token));
        let known = std::fs::read_to_string(&auth).unwrap_or_default();
        if !known.contains(line.trim_end())
            && !write_new(&auth, &format!("{HEADER}{line}")).map_err(io(&auth))?
        {
            append(&auth, &line)?;
        }
        report.push(format!(
            "{} {} ({who})",
            if made { "made" } else { "kept" },
            path.display()
        ));
    }
    if !what.apps.is_empty() || what.admin {
        report.push(format!("credentials in {}", auth.display()));
    }
    let csrf = dir.join(CSRF_KEY_FILE);
    let made = write_new(&csrf, &format!("{}\n", random_token())).map_err(io(&csrf))?;
    report.push(format!(
        "{} {} (the carts' CSRF key)",
        if made { "made" } else { "kept" },
        csrf.display()
    ));
    if let Some(names) = &what.tls_names {
        report.extend(dev_cert(dir, names, &[])?);
    }
    Ok(report)
}

/// The top of a credentials file `setup` makes.
const HEADER: &str = "# Who may use this session server: docs/security.md. Made by `session-server setup`;\n\
# reloaded on SIGHUP. Each token is in a file of its own; here only its SHA-256.\n";

/// Makes, in `dir`, what is missing of a development CA (`ca.pem`, `ca.key`), a server
/// certificate for `names` and loopback (`server.pem`, `server.key`), and a client
/// certificate per `clients` name, its subject common name (`client-NAME.pem`, `.key`).
pub fn dev_cert(
    dir: &Path,
    names: &[String],
    clients: &[String],
) -> Result<Vec<String>, SetupError> {
    make_dir(dir)?;
    let mut report = Vec::new();
    let (ca_cert, ca_key) = (dir.join(CA_FILE), dir.join("ca.key"));
    let ca_key_pair = if ca_cert.exists() && ca_key.exists() {
        report.push(format!("kept {}", ca_cert.display()));
        KeyPair::from_pem(&read(&ca_key)?)?
    } else {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "session-server development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        write(&ca_key, &key.serialize_pem())?;
        write(&ca_cert, &cert.pem())?;
        report.push(format!("made {} (the CA clients trust)", ca_cert.display()));
        key
    };
    let issuer = Issuer::from_ca_cert_pem(&read(&ca_cert)?, ca_key_pair)?;

    let mut sans: Vec<String> = names.to_vec();
    for local in ["localhost", "127.0.0.1", "::1"] {
        if !sans.iter().any(|n| n == local) {
            sans.push(local.into());
        }
    }
    let leaf = |cn: &str, sans: Vec<String>, usage| -> Result<(String, String), SetupError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (cert, key) = (dir.join(SERVER_CERT_FILE), dir.join(SERVER_KEY_FILE));
    if cert.exists() && key.exists() {
        report.push(format!("kept {}", cert.display()));
    } else {
        let (pem, key_pem) = leaf(
            "session-server",
            sans.clone(),
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        write(&key, &key_pem)?;
        write(&cert, &pem)?;
        report.push(format!("made {} for {}", cert.display(), sans.join(", ")));
    }
    for client in clients {
        let (cert, key) = (
            dir.join(format!("client-{client}.pem")),
            dir.join(format!("client-{client}.key")),
        );
        if cert.exists() && key.exists() {
            report.push(format!("kept {}", cert.display()));
            continue;
        }
        let (pem, key_pem) = leaf(client, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
        write(&key, &key_pem)?;
        write(&cert, &pem)?;
        report.push(format!("made {} (common name {client})", cert.display()));
    }
    Ok(report)
}

fn make_dir(dir: &Path) -> Result<(), SetupError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, SetupError> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// Writes a file that must not exist yet (a key is written before its certificate, so a
/// certificate never stands without its key).
fn write(path: &Path, text: &str) -> Result<(), SetupError> {
    let _ = std::fs::remove_file(path); // a half pair left by an interrupted run
    write_new(path, text).map(drop).map_err(io(path))
}

fn append(path: &Path, line: &str) -> Result<(), SetupError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io(path))?;
    file.write_all(line.as_bytes()).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        apps::{Apps, Quota},
        auth::{Auth, Presented, Source},
    };
    use std::sync::Arc;

    #[test]
    fn setup_makes_what_is_missing_and_keeps_what_is_there() {
        let dir = std::env::temp_dir().join(format!("setup-{}", random_token()));
        let what = Setup {
            apps: vec!["cart".into()],
            admin: true,
            tls_names: Some(vec!["session-server".into()]),
        };
        setup(&dir, &what).expect("first run");
        let token = crate::auth::read_token_file(&dir.join("cart.token")).expect("token");
        let auth_text = std::fs::read_to_string(dir.join(AUTH_FILE)).expect("auth");
        assert!(
            !auth_text.contains(&token),
            "only the digest is in the credentials"
        );
        let auth = Auth::new(
            Source::File(dir.join(AUTH_FILE)),
            Arc::new(Apps::new(Quota::default())),
        )
        .expect("a valid credentials file");
        let presented = Presented {
            token: Some(&token),
            protocol: 2,
            ..Presented::default()
        };
        assert_eq!(
            &*auth.authenticate(presented).expect("the cart's").app.name,
            "cart"
        );

        let cert = std::fs::read(dir.join(SERVER_CERT_FILE)).expect("cert");
        setup(&dir, &what).expect("second run");
        assert_eq!(
            crate::auth::read_token_file(&dir.join("cart.token")).expect("token"),
            token
        );
        assert_eq!(
            std::fs::read(dir.join(SERVER_CERT_FILE)).expect("cert"),
            cert
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(AUTH_FILE)).expect("auth"),
            auth_text,
            "nothing appended twice"
        );
        assert!(crate::tls::certificates(&dir.join(CA_FILE)).is_ok());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
