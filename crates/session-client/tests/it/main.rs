//! The client's integration tests, in one binary (one link instead of eight): each module
//! runs against real session servers on 127.0.0.1:0 (`common`).

mod actix;
mod common;
mod guarantees;
mod lifecycle;
mod near_cache;
mod nonstop;
mod protocols;
mod threads;
mod watch;
