//! The shopping-cart sample: the classic clustered-sessions tutorial, in Rust.
//!
//! Two instances of this app (ports 9081 and 9082) share sessions through the session
//! server, so a cart filled on one is intact on the other.
//!
//! - [`config`]: flags and resolved settings of an instance.
//! - [`catalog`]: the nine products, read from `samples/cart/`.
//! - [`shopper`]: what the cart keeps in a session and the server-side operations on it.
//! - [`csrf`]: form tokens bound to a cookie of their own, so that no page view needs a session.
//! - [`page`]: the box, "Recently viewed" and the session panel shown on every page.
//! - [`routes`]: the pages under `/Cart`; [`live`]: server-sent events fed by the watch stream.
//! - [`error`]: failures and their friendly pages; [`state`]: what the workers share;
//!   [`startup`]: building and running the app;
//!   [`telemetry`]: logs.

pub mod catalog;
pub mod config;
pub mod csrf;
pub mod error;
pub mod live;
pub mod page;
pub mod routes;
pub mod shopper;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use routes::LIVE_REFRESH_HEADER;
