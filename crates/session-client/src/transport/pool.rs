//! A pipeline per calling thread. App servers such as actix-web call from threads that each
//! run a current-thread runtime of their own: a call through the client's connection would
//! cost two wake-ups across threads (the writer, then the caller), each a system call and
//! often a sleeping core to wake; a framed connection of the thread's own keeps a call on it
//! from end to end. Kept until the client goes or the thread runs another runtime.

use super::pipeline::{Owner, Pipeline};
use std::{cell::RefCell, sync::Weak};

thread_local! {
    /// This thread's own pipelines, one per client.
    static HERE: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

/// A client's pipeline on one thread's current-thread runtime.
struct Local {
    /// The client's own pipeline: gone when every handle of the client is.
    parent: Weak<Owner>,
    runtime: tokio::runtime::Id,
    pipeline: Pipeline,
}

/// The calling thread's pipeline for `client`'s calls, when the thread runs a current-thread
/// runtime other than the client's (an actix-web worker does) and the client speaks framed
/// (HTTP/2 runs on the client's runtime whatever the caller's thread). `None`: call `client`.
pub(super) fn here(client: &Pipeline) -> Option<Pipeline> {
    let target = client.framed_target()?;
    let current = tokio::runtime::Handle::try_current().ok()?;
    if current.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread
        || current.id() == client.runtime_id()
    {
        return None;
    }
    let runtime = current.id();
    let parent = client.owner_ptr();
    HERE.with_borrow_mut(|here| {
        here.retain(|l| l.runtime == runtime && l.parent.strong_count() > 0);
        if let Some(local) = here.iter().find(|l| l.parent.as_ptr() == parent) {
            return Some(local.pipeline.clone());
        }
        let pipeline = client.child(target);
        here.push(Local {
            parent: client.owner(),
            runtime,
            pipeline: pipeline.clone(),
        });
        Some(pipeline)
    })
}
