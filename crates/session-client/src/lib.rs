//! Client library of the session server, for app servers.
//!
//! - [`SessionClient`] ([`client`]): the typed API over `session.v1`: create, get, apply
//!   batches of [`Ops`], invalidate, rotate id, and [`SessionClient::modify`] for lock-free
//!   read-modify-write. Every call has a deadline (default 1 s); an unreachable server gives
//!   [`Error::Unavailable`] within it, and the client reconnects by itself when it returns.
//! - Calls travel over one long-lived `Pipeline` stream per client, on which concurrent calls
//!   coalesce into batches (`pipeline.rs`; unary RPCs stay for tools such as grpcurl).
//! - [`watch::subscribe`]: every session's events, resumed across reconnects.
//! - [`cache`]: an optional near cache kept coherent by those events
//!   ([`SessionClient::with_near_cache`]), with read-your-writes across app servers.
//! - [`actix`] (feature `actix`, on by default): middleware and extractor for actix-web.
//!
//! Values are bytes with a content type; the JSON helpers (`set_json`, `get_json`, ...) are
//! the default encoding.

#[cfg(feature = "actix")]
pub mod actix;
pub mod cache;
pub mod client;
pub mod error;
mod pipeline;
pub mod value;
pub mod watch;

pub use client::{
    ClientConfig, DEFAULT_TIMEOUT, LocalService, Protocol, SessionClient, default_server_url,
};
pub use error::Error;
pub use session_proto::v1::{Event, EventKind, OpResult};
pub use value::{Attribute, JSON, Ops, Session, SessionInfo, Value, WriteResult};
