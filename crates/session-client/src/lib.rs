//! Client library of the session server, for app servers.
//!
//! A client works on one app's sessions (`ClientConfig::app`), with that app's bearer token
//! (`ClientConfig::token`) when the server requires one, over TLS for an `https://` address
//! (`ClientConfig::tls`); see docs/security.md.
//!
//! Layers, each importing only those before it:
//! - `transport`: carries a call to the session service and brings back its reply: one
//!   long-lived pipeline per client on which concurrent calls coalesce into batches, over a
//!   framed TCP (or TLS) connection that opens with the handshake (default) or the `Pipeline`
//!   gRPC RPC, a pipeline per calling thread for actix-web's workers, or a service in this
//!   process.
//! - `convert`: the only place protobuf meets the client's types ([`value`], [`ops`],
//!   [`event`], [`SessionId`]) and the server's errors become an [`Error`].
//! - [`SessionClient`] ([`client`]): the typed API: create, get, apply batches of [`Ops`],
//!   invalidate, rotate id, and [`SessionClient::modify`] for lock-free read-modify-write.
//!   Every call has a deadline (default 1 s); an unreachable server gives
//!   [`Error::Unavailable`] within it, and the client reconnects by itself when it returns.
//!   [`SessionClient::subscribe`] ([`watch`]): the app's sessions' events, by reference
//!   ([`SessionRef`], never an id), resumed across reconnects from a [`Cursor`].
//! - [`CachedClient`] ([`cache`]): a near cache wrapped around a client, kept coherent by
//!   those events, with read-your-writes across app servers
//!   ([`SessionClient::with_near_cache`]); [`AnyClient`] is either kind.
//! - [`actix`] (feature `actix`, on by default): middleware and extractor for actix-web.
//!
//! Values are bytes with a content type; the JSON helpers (`set_json`, `get_json`, ...) are
//! the default encoding ([`decode`]).

#[cfg(feature = "actix")]
pub mod actix;
mod any;
pub mod cache;
pub mod client;
pub mod config;
mod convert;
pub mod decode;
pub mod error;
pub mod event;
pub mod hello;
mod id;
pub mod ops;
mod transport;
pub mod value;
pub mod watch;

pub use any::AnyClient;
pub use cache::CachedClient;
pub use client::SessionClient;
pub use config::{ClientConfig, DEFAULT_TIMEOUT, Protocol, TlsOptions, Token, default_server_url};
pub use decode::JSON;
pub use error::Error;
pub use event::{Cursor, Event, EventKind, WatchHello, WatchItem};
pub use hello::ServerHello;
pub use id::{SessionId, SessionRef};
pub use ops::Ops;
pub use transport::LocalService;
pub use value::{Attribute, OpResult, Session, SessionInfo, Value, WriteResult};
