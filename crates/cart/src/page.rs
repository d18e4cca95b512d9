//! What every page shows around its content: the coloured box, "Recently viewed" and the
//! session panel.

use crate::{catalog::Product, shopper, state::AppState};
use actix_web::HttpRequest;
use session_client::Session;
use std::{net::IpAddr, time::SystemTime};

#[derive(Debug, Clone)]
pub struct Frame {
    pub port: u16,
    pub peer_port: u16,
    /// The other instance's cart on the host the browser used.
    pub peer_url: String,
    pub color: String,
    pub clustered: bool,
    /// Units in the cart.
    pub total: usize,
    pub history: Vec<Product>,
    pub panel: Option<Panel>,
    /// The forms' CSRF token (see [`crate::csrf`]).
    pub csrf: String,
}

/// The session panel: enough to watch the session move between servers, never the whole id.
#[derive(Debug, Clone)]
pub struct Panel {
    pub id_prefix: String,
    pub created: String,
    pub last_access: String,
    pub version: u64,
    pub last_server: String,
    pub hops: i64,
}

impl Frame {
    /// The frame of a page for `session`, whose forms carry the CSRF token `csrf`.
    pub fn new(
        state: &AppState,
        req: &HttpRequest,
        session: Option<&Session>,
        csrf: String,
    ) -> Result<Self, session_client::Error> {
        let settings = &state.settings;
        let (scheme, host) = scheme_and_host(req, &settings.trusted_proxies);
        let peer_url = format!(
            "{scheme}://{}:{}/Cart",
            host_name(&host),
            settings.peer_port
        );
        let (total, history, panel) = match session {
            None => (0, Vec::new(), None),
            Some(s) => {
                let total = s.list_len(shopper::CART)?;
                let history = shopper::history(s)?
                    .iter()
                    .filter_map(|id| state.catalog.by_id(id).cloned())
                    .collect();
                let panel = Panel {
                    id_prefix: s.info.id.chars().take(8).collect(),
                    created: timestamp(s.info.created_at),
                    last_access: timestamp(s.info.last_access),
                    version: s.info.version,
                    last_server: s
                        .get_json::<String>(shopper::LAST_SERVER)?
                        .unwrap_or_default(),
                    hops: s.counter(shopper::HOPS)?,
                };
                (total, history, Some(panel))
            }
        };
        Ok(Self {
            port: settings.public_port,
            peer_port: settings.peer_port,
            peer_url,
            color: settings.color.clone(),
            clustered: state.clustered(),
            total,
            history,
            panel,
            csrf,
        })
    }
}

/// The scheme and host a browser used, as far as this instance can tell: from the request
/// itself, or from the `Forwarded`/`X-Forwarded-*` headers when they come from one of the
/// `trusted` proxies (anyone can send those headers, so nobody else is believed).
pub fn scheme_and_host(req: &HttpRequest, trusted: &[IpAddr]) -> (String, String) {
    let from_proxy = req
        .peer_addr()
        .is_some_and(|peer| trusted.contains(&peer.ip()));
    if from_proxy {
        let info = req.connection_info();
        return (info.scheme().to_owned(), info.host().to_owned());
    }
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_else(|| req.app_config().host());
    (scheme.to_owned(), host.to_owned())
}

/// "2026-11-28 01:52:56 UTC", edited in place (every page shows two).
fn timestamp(t: SystemTime) -> String {
    let mut s = humantime::format_rfc3339_seconds(t).to_string();
    if let Some(at) = s.find('T') {
        s.replace_range(at..=at, " ");
    }
    if s.ends_with('Z') {
        s.pop();
        s.push_str(" UTC");
    }
    s
}

/// The host part of a Host header ("localhost:9081" → "localhost", "[::1]:9081" → "[::1]"),
/// or "localhost" when it holds anything a host name cannot.
fn host_name(host: &str) -> &str {
    let name = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let plausible = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c));
    if plausible { name } else { "localhost" }
}

#[cfg(test)]
mod tests {
    use super::{host_name, timestamp};
    use std::time::{Duration, SystemTime};

    #[test]
    fn timestamps_read_as_dates_in_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_834_376);
        assert_eq!(timestamp(t), "2026-11-28 02:52:56 UTC");
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn host_names_keep_only_the_host() {
        assert_eq!(host_name("localhost:9081"), "localhost");
        assert_eq!(host_name("example.org"), "example.org");
        assert_eq!(host_name("[::1]:9081"), "[::1]");
        assert_eq!(host_name("evil\"><script>:9081"), "localhost");
    }
}
