//! The client's integration tests, in one binary (one link instead of eight): each module
//! runs against real session servers on 127.0.0.1:0 (`common`).

#![allow(clippy::expect_used)] // tests: a panic is how a test fails

mod actix;
mod common;
mod guarantees;
mod lifecycle;
mod near_cache;
mod nonstop;
mod protocols;
mod security;
mod threads;
mod watch;
