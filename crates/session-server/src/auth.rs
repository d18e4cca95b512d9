//! Authentication: who a client is (an app's bearer token or client certificate, or an admin
//! credential), and what it may do.
//!
//! Credentials come from a file (`--auth-file`, reloaded on SIGHUP) or an environment variable
//! (`SESSION_AUTH`), in the format of [`Credentials::parse`]. Tokens are kept as their SHA-256
//! digests and compared in constant time; neither a token nor its digest is ever logged.
//! Authentication is on as soon as a source is given, whatever it holds: a file emptied by
//! mistake refuses everyone rather than letting everyone in.
//!
//! A session call needs an app credential: none is `UNAUTHENTICATED`, an admin credential
//! (for the admin API) `PERMISSION_DENIED`. Without authentication, a client belongs to the
//! app it names, [`DEFAULT_APP`] if it names none.

use crate::apps::{App, AppError, Apps, DEFAULT_APP, Quota, valid_name};
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};
use subtle::ConstantTimeEq;
use tonic::Code;

/// Shortest token accepted as `token:` text: 128 bits of base64 and more.
pub const MIN_TOKEN_LEN: usize = 32;

/// What a credential lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Its app's sessions and events.
    App,
    /// The admin API and the console.
    Admin,
}

/// A credential's holder, as the credentials name it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    role: Role,
    /// The app of an `App` grant.
    app: Option<Arc<str>>,
}

type TokenDigest = [u8; 32];

/// The credentials and quotas of one reading of the source.
#[derive(Default)]
pub struct Credentials {
    tokens: Vec<(TokenDigest, Grant)>,
    /// Subject common names of client certificates (verified by `--tls-client-ca`).
    certificates: Vec<(String, Grant)>,
    quotas: Vec<(String, Quota)>,
}

/// Never shows a token or a digest.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// A line of the credentials that cannot be read. The message never repeats a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl Credentials {
    /// Reads credentials, one per line (`#` starts a comment):
    ///
    /// ```text
    /// app:cart    sha256:<64 hex digits>   a bearer token of app "cart", by its SHA-256
    /// app:cart    token:<text>             the token itself (at least 32 characters)
    /// app:cart    cert:<common name>       a client certificate with this subject CN
    /// admin       sha256:<64 hex digits>   an admin token (token: and cert: work too)
    /// quota:cart  sessions=100000 bytes=256MiB rate=5000
    /// ```
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut credentials = Self::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let fail = |reason: String| ParseError {
                line: n + 1,
                reason,
            };
            let (who, rest) = line
                .split_once(char::is_whitespace)
                .map(|(w, r)| (w, r.trim()))
                .unwrap_or((line, ""));
            if let Some(app) = who.strip_prefix("quota:") {
                if !valid_name(app) {
                    return Err(fail(format!("{app:?} is not an app name")));
                }
                credentials
                    .quotas
                    .push((app.to_owned(), quota(rest).map_err(fail)?));
                continue;
            }
            let grant = match who {
                "admin" => Grant {
                    role: Role::Admin,
                    app: None,
                },
                _ => match who.strip_prefix("app:") {
                    Some(app) if valid_name(app) => Grant {
                        role: Role::App,
                        app: Some(app.into()),
                    },
                    _ => {
                        return Err(fail(format!(
                            "{who:?} names nobody: write app:NAME, admin or quota:NAME"
                        )));
                    }
                },
            };
            if let Some(hex) = rest.strip_prefix("sha256:") {
                let digest = from_hex(hex)
                    .ok_or_else(|| fail("a sha256: digest is 64 hexadecimal digits".to_owned()))?;
                credentials.tokens.push((digest, grant));
            } else if let Some(token) = rest.strip_prefix("token:") {
                if token.len() < MIN_TOKEN_LEN {
                    return Err(fail(format!(
                        "a token is at least {MIN_TOKEN_LEN} characters (session-server setup makes them)"
                    )));
                }
                credentials.tokens.push((digest(token), grant));
            } else if let Some(name) = rest.strip_prefix("cert:") {
                if name.is_empty() {
                    return Err(fail("cert: needs a certificate's common name".to_owned()));
                }
                credentials.certificates.push((name.to_owned(), grant));
            } else {
                return Err(fail(
                    "the credential is sha256:DIGEST, token:TEXT or cert:COMMON-NAME".to_owned(),
                ));
            }
        }
        Ok(credentials)
    }

    /// How many credentials of each kind there are: what a reload logs.
    pub fn summary(&self) -> String {
        let admins = self
            .tokens
            .iter()
            .map(|(_, g)| g)
            .chain(self.certificates.iter().map(|(_, g)| g))
            .filter(|g| g.role == Role::Admin)
            .count();
        format!(
            "{} tokens and {} certificate names ({admins} of them admin), {} quotas",
            self.tokens.len(),
            self.certificates.len(),
            self.quotas.len()
        )
    }

    /// The grant of a token, compared with every token in constant time.
    fn token(&self, token: &str) -> Option<&Grant> {
        let presented = digest(token);
        let mut found = None;
        for (known, grant) in &self.tokens {
            if bool::from(known.ct_eq(&presented)) {
                found = Some(grant);
            }
        }
        found
    }

    fn certificate(&self, name: &str) -> Option<&Grant> {
        self.certificates
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, g)| g)
    }
}

/// A token's digest, as the credentials keep it.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// A token's digest as the credentials write it: `sha256:` and 64 hexadecimal digits.
pub fn digest_line(token: &str) -> String {
    let hex: String = digest(token).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn from_hex(text: &str) -> Option<TokenDigest> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// `sessions=N bytes=SIZE rate=N`, each optional.
fn quota(text: &str) -> Result<Quota, String> {
    let mut quota = Quota::default();
    for part in text.split_whitespace() {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: write sessions=N, bytes=SIZE or rate=N"))?;
        let number = || {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{key}={value:?}: a whole number above 0"))
        };
        match key {
            "sessions" => quota.max_sessions = Some(number()?),
            "bytes" => {
                let bytes = value
                    .parse::<bytesize::ByteSize>()
                    .map_err(|e| format!("bytes={value:?}: {e} (write a size such as 256MiB)"))?;
                if bytes.as_u64() == 0 {
                    return Err(format!("bytes={value:?}: a size above 0"));
                }
                quota.max_bytes = Some(bytes.as_u64());
            }
            "rate" => {
                let rate =
                    u32::try_from(number()?).map_err(|_| format!("rate={value}: too large"))?;
                quota.rate = Some(rate);
            }
            _ => return Err(format!("{key:?}: a quota has sessions=, bytes= and rate=")),
        }
    }
    Ok(quota)
}

/// Where credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// Nobody needs one: the server trusts whoever reaches it (loopback, or `--insecure`).
    Off,
    /// A file, read again on SIGHUP.
    File(PathBuf),
    /// Text given at start-up (an environment variable); a reload keeps it.
    Text(String),
}

/// Never shows the text, which may hold tokens.
impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Off => f.write_str("Off"),
            Source::File(path) => f.debug_tuple("File").field(path).finish(),
            Source::Text(_) => f.write_str("Text(..)"),
        }
    }
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the credentials file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("credentials {where_}, {error}")]
    Parse { where_: String, error: ParseError },
    #[error("credentials: {0}")]
    Apps(#[from] AppError),
}

/// What a client presents when it connects (or, on gRPC, with each request).
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    pub token: Option<&'a str>,
    /// The subject common name of a client certificate that TLS verified.
    pub certificate: Option<&'a str>,
    /// The app it says it works on.
    pub app: Option<&'a str>,
    pub node: Option<&'a str>,
    /// The protocol version it speaks (1 when it sent no hello).
    pub protocol: u32,
}

/// Why a client is refused: the status it gets and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

impl Refusal {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What authenticated a caller, so that a reload can check it again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Credential {
    Token(TokenDigest),
    Certificate(Arc<str>),
}

/// An authenticated client of the session service: the app it works on, and who it is.
#[derive(Debug, Clone)]
pub struct Caller {
    pub app: Arc<App>,
    /// The client's node name (an app server instance), for logs; empty when it gave none.
    pub node: Arc<str>,
    /// The protocol version spoken with it.
    pub protocol: u32,
    /// `None`: authentication was off.
    credential: Option<Credential>,
    /// The credentials' generation it was last checked against.
    checked: u64,
}

/// Who may call: the credentials in force and the apps they name.
#[derive(Debug)]
pub struct Auth {
    source: Source,
    credentials: RwLock<Arc<Credentials>>,
    /// Bumped by every reload: callers authenticated before are checked again.
    generation: AtomicU64,
    apps: Arc<Apps>,
}

/// Longest node name kept; longer ones are cut.
const MAX_NODE: usize = 128;

impl Auth {
    /// Reads `source` (nothing for [`Source::Off`]) and applies its quotas to `apps`.
    pub fn new(source: Source, apps: Arc<Apps>) -> Result<Self, LoadError> {
        let credentials = read(&source)?;
        apps.configure(&credentials.quotas)?;
        Ok(Self {
            source,
            credentials: RwLock::new(Arc::new(credentials)),
            generation: AtomicU64::new(0),
            apps,
        })
    }

    /// Nobody needs a credential.
    pub fn off(apps: Arc<Apps>) -> Self {
        Self {
            source: Source::Off,
            credentials: RwLock::default(),
            generation: AtomicU64::new(0),
            apps,
        }
    }

    /// Whether callers need a credential.
    pub fn enabled(&self) -> bool {
        self.source != Source::Off
    }

    pub fn apps(&self) -> &Arc<Apps> {
        &self.apps
    }

    /// Reads the source again: new credentials and quotas take effect at once, and callers
    /// whose credential is gone are refused from their next call. On an error the
    /// credentials in force stay.
    pub fn reload(&self) -> Result<String, LoadError> {
        let credentials = read(&self.source)?;
        self.apps.configure(&credentials.quotas)?;
        let summary = credentials.summary();
        *self.credentials.write() = Arc::new(credentials);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(summary)
    }

    /// The caller `presented` makes, or why it is refused.
    pub fn authenticate(&self, presented: Presented<'_>) -> Result<Caller, Refusal> {
        let protocol = presented.protocol.clamp(1, session_proto::PROTOCOL_VERSION);
        let node: Arc<str> = presented
            .node
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_NODE)
            .collect::<String>()
            .into();
        let checked = self.generation.load(Ordering::Acquire);
        if !self.enabled() {
            let app = self.app(presented.app.unwrap_or(DEFAULT_APP))?;
            return Ok(Caller {
                app,
                node,
                protocol,
                credential: None,
                checked,
            });
        }
        let credentials = Arc::clone(&self.credentials.read());
        let (grant, credential) = match (presented.token, presented.certificate) {
            (Some(token), _) => (
                credentials.token(token).ok_or_else(|| {
                    Refusal::new(
                        Code::Unauthenticated,
                        "the token is not one this session server accepts (revoked, mistyped, or another server's)",
                    )
                })?,
                Credential::Token(digest(token)),
            ),
            (None, Some(name)) => (
                credentials.certificate(name).ok_or_else(|| {
                    Refusal::new(
                        Code::Unauthenticated,
                        format!("no credential names the client certificate {name:?}"),
                    )
                })?,
                Credential::Certificate(name.into()),
            ),
            (None, None) => {
                return Err(Refusal::new(
                    Code::Unauthenticated,
                    "this session server requires a credential: an app's bearer token (or a client certificate); see docs/security.md",
                ));
            }
        };
        let app = granted_app(grant, presented.app)?;
        let app = self.app(&app)?;
        Ok(Caller {
            app,
            node,
            protocol,
            credential: Some(credential),
            checked,
        })
    }

    /// Admits a call to the admin API: an admin credential when authentication is on (an
    /// app's is `PERMISSION_DENIED`); anyone who reaches the port when it is off.
    pub fn authenticate_admin(&self, presented: Presented<'_>) -> Result<(), Refusal> {
        if !self.enabled() {
            return Ok(());
        }
        let credentials = Arc::clone(&self.credentials.read());
        let grant = match (presented.token, presented.certificate) {
            (Some(token), _) => credentials.token(token),
            (None, Some(name)) => credentials.certificate(name),
            (None, None) => {
                return Err(Refusal::new(
                    Code::Unauthenticated,
                    "the admin API requires the admin credential (session-server setup makes admin.token); see docs/security.md",
                ));
            }
        };
        match grant {
            Some(grant) if grant.role == Role::Admin => Ok(()),
            Some(_) => Err(Refusal::new(
                Code::PermissionDenied,
                "an app's credential cannot use the admin API: give the admin credential",
            )),
            None => Err(Refusal::new(
                Code::Unauthenticated,
                "the credential is not one this session server accepts (revoked, mistyped, or another server's)",
            )),
        }
    }

    /// Checks `caller` against the credentials in force, if they changed since it was last
    /// checked: one atomic load otherwise.
    pub fn recheck(&self, caller: &mut Caller) -> Result<(), Refusal> {
        let now = self.generation.load(Ordering::Acquire);
        if caller.checked == now {
            return Ok(());
        }
        if let Some(credential) = &caller.credential {
            let credentials = Arc::clone(&self.credentials.read());
            let grant = match credential {
                Credential::Token(digest) => credentials
                    .tokens
                    .iter()
                    .find(|(known, _)| bool::from(known.ct_eq(digest)))
                    .map(|(_, g)| g),
                Credential::Certificate(name) => credentials.certificate(name),
            };
            let still = grant.is_some_and(|g| {
                g.role == Role::App && g.app.as_deref() == Some(&*caller.app.name)
            });
            if !still {
                return Err(Refusal::new(
                    Code::Unauthenticated,
                    "the credential this connection used was revoked",
                ));
            }
        }
        caller.checked = now;
        Ok(())
    }

    fn app(&self, name: &str) -> Result<Arc<App>, Refusal> {
        self.apps.get_or_create(name).map_err(|e| match e {
            AppError::BadName => Refusal::new(Code::InvalidArgument, e.to_string()),
            AppError::TooMany => Refusal::new(Code::ResourceExhausted, e.to_string()),
        })
    }
}

/// The app a grant lets its holder work on, when it asked for `asked`.
fn granted_app(grant: &Grant, asked: Option<&str>) -> Result<String, Refusal> {
    let app = match (grant.role, &grant.app) {
        (Role::App, Some(app)) => app,
        _ => {
            return Err(Refusal::new(
                Code::PermissionDenied,
                "an admin credential cannot work on sessions: give an app's credential",
            ));
        }
    };
    match asked {
        Some(asked) if asked != &**app => Err(Refusal::new(
            Code::PermissionDenied,
            format!("this credential is app {app:?}'s, not {asked:?}'s"),
        )),
        _ => Ok(app.to_string()),
    }
}

fn read(source: &Source) -> Result<Credentials, LoadError> {
    match source {
        Source::Off => Ok(Credentials::default()),
        Source::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
                path: path.clone(),
                error,
            })?;
            Credentials::parse(&text).map_err(|error| LoadError::Parse {
                where_: format!("file {}", path.display()),
                error,
            })
        }
        Source::Text(text) => Credentials::parse(text).map_err(|error| LoadError::Parse {
            where_: "from SESSION_AUTH".into(),
            error,
        }),
    }
}

/// The token a client keeps in a file: the file's first line, trimmed.
pub fn read_token_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CART: &str = "cart-token-0123456789abcdefghijklmnopqrstuv";
    const ADMIN: &str = "admin-token-0123456789abcdefghijklmnopqrstu";

    fn auth(text: &str) -> Auth {
        Auth::new(
            Source::Text(text.to_owned()),
            Arc::new(Apps::new(Quota::default())),
        )
        .expect("valid credentials")
    }

    fn token(token: &str) -> Presented<'_> {
        Presented {
            token: Some(token),
            protocol: 2,
            ..Presented::default()
        }
    }

    #[test]
    fn a_token_gives_its_app_and_nothing_else() {
        let auth = auth(&format!(
            "# comment\napp:cart {}\nadmin token:{ADMIN}\n",
            digest_line(CART)
        ));
        let caller = auth.authenticate(token(CART)).expect("the cart's token");
        assert_eq!(&*caller.app.name, "cart");
        assert_eq!(
            auth.authenticate(Presented::default()).unwrap_err().code,
            Code::Unauthenticated
        );
        assert_eq!(
            auth.authenticate(token("wrong")).unwrap_err().code,
            Code::Unauthenticated
        );
        assert_eq!(
            auth.authenticate(token(ADMIN)).unwrap_err().code,
            Code::PermissionDenied,
            "an admin token is the wrong role for sessions"
        );
        let other = Presented {
            app: Some("shop"),
            ..token(CART)
        };
        assert_eq!(
            auth.authenticate(other).unwrap_err().code,
            Code::PermissionDenied
        );
    }

    #[test]
    fn without_authentication_a_client_is_the_app_it_names() {
        let auth = Auth::off(Arc::new(Apps::new(Quota::default())));
        let named = Presented {
            app: Some("shop"),
            ..Presented::default()
        };
        assert_eq!(&*auth.authenticate(named).expect("open").app.name, "shop");
        let unnamed = auth.authenticate(Presented::default()).expect("open");
        assert_eq!(&*unnamed.app.name, DEFAULT_APP);
        assert_eq!(unnamed.protocol, 1, "no hello is protocol 1");
    }

    #[test]
    fn a_reload_revokes_what_it_no_longer_holds() {
        let path = std::env::temp_dir().join(format!("auth-test-{}", std::process::id()));
        std::fs::write(&path, format!("app:cart token:{CART}\n")).expect("write");
        let auth = Auth::new(
            Source::File(path.clone()),
            Arc::new(Apps::new(Quota::default())),
        )
        .expect("valid");
        let mut caller = auth.authenticate(token(CART)).expect("accepted");
        std::fs::write(
            &path,
            "app:cart token:a-new-token-0123456789abcdefghijklmn\n",
        )
        .expect("write");
        auth.reload().expect("reload");
        assert_eq!(
            auth.recheck(&mut caller).unwrap_err().code,
            Code::Unauthenticated
        );
        std::fs::write(&path, "this is not a credential\n").expect("write");
        assert!(auth.reload().is_err(), "a bad file is refused...");
        assert!(
            auth.authenticate(token("a-new-token-0123456789abcdefghijklmn"))
                .is_ok(),
            "...and the credentials in force stay"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn errors_name_the_line_and_never_the_secret() {
        let secret = "short-secret";
        let error =
            Credentials::parse(&format!("\napp:cart token:{secret}")).expect_err("too short");
        assert_eq!(error.line, 2);
        assert!(!error.to_string().contains(secret), "{error}");
        assert!(Credentials::parse("app:cart sha256:abc").is_err());
        assert!(Credentials::parse("app:a/b token:x").is_err());
        assert!(Credentials::parse("quota:cart sessions=0").is_err());
        let q = Credentials::parse("quota:cart sessions=10 bytes=1MiB rate=50").expect("valid");
        assert_eq!(
            q.quotas[0].1,
            Quota {
                max_sessions: Some(10),
                max_bytes: Some(1 << 20),
                rate: Some(50)
            }
        );
        assert!(!format!("{:?}", auth(&format!("app:cart token:{CART}"))).contains(CART));
    }
}
