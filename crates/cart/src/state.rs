//! [`AppState`]: what every worker of an instance shares.

use crate::{
    catalog::Catalog,
    config::{SessionMode, Settings},
    live::Live,
};
use session_client::AnyClient;

/// Shared by every worker.
#[derive(Debug)]
pub struct AppState {
    pub settings: Settings,
    pub catalog: Catalog,
    pub live: Live,
    /// Knows what the session server's store keeps across an outage (the 503 page says it).
    pub sessions: AnyClient,
    /// This instance's name in sessions (`last_server`): its public port.
    pub me: String,
}

impl AppState {
    pub fn clustered(&self) -> bool {
        self.settings.mode == SessionMode::Clustered
    }
}
