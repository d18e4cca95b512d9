//! The cart over real HTTP against real session servers, in one binary: the tutorial's
//! pages and forms (`shopping`), read-your-writes across instances (`consistency`) and
//! events that never carry an id (`events`). The
//! browser and Docker Compose tests stay binaries of their own: both drive the sample on its
//! ports, so they must not run at the same time.

#![allow(clippy::expect_used)] // tests: a panic is how a test fails

#[path = "../common/mod.rs"]
mod common;
mod consistency;
mod events;
mod shopping;
