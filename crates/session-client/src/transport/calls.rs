//! A pipeline's table of calls: those waiting to be sent (the outbox, in order) and those
//! waiting for their answer (by tag), with what happens to them when a stream answers, ends
//! or falls silent.

use crate::error::Error;
use prost::Message;
use session_proto::v1 as pb;
use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasherDefault, Hasher},
    task::Waker,
    time::Instant,
};
use tokio::sync::oneshot;

/// Most calls sent in one message.
const MAX_BATCH: usize = 256;
/// Most bytes of calls in one message (a single larger call travels alone): the server
/// decodes a whole message under its limit of one session plus some room.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Marks a pending call that has not been sent on any stream yet.
const UNSENT: u64 = 0;

pub(super) type Answer = oneshot::Sender<Result<pb::reply::Kind, Error>>;

#[derive(Debug, Default)]
pub(super) struct Calls {
    /// The generation of the open stream, once its reader is in place.
    pub(super) stream: Option<u64>,
    /// The generation the outbox drains into: the newest stream, from the moment it is being
    /// opened until it ends (0: none). Older bodies end when they see it change.
    pub(super) live: u64,
    /// Streams opened so far: the generation of the newest.
    pub(super) opened: u64,
    next_tag: u64,
    /// Calls not sent yet, in order.
    outbox: VecDeque<pb::Call>,
    /// The request body's waker, while it waits for calls.
    pub(super) waker: Option<Waker>,
    /// Calls not answered yet, by tag.
    pending: HashMap<u64, Pending, BuildHasherDefault<TagHasher>>,
    /// Every handle is gone.
    pub(super) closed: bool,
    /// Why the server refused a whole message (a reply of tag 0, which no call carries): the
    /// error of the calls still waiting when the stream then ends.
    refusal: Option<Error>,
}

/// A call waiting for its answer.
#[derive(Debug)]
struct Pending {
    /// The stream that carried it ([`UNSENT`] until one has).
    generation: u64,
    /// When it fails unanswered: the stream's reader checks, so that a call costs no timer.
    deadline: Instant,
    answer: Answer,
}

impl Calls {
    /// Queues a call; it fails unanswered at `deadline`.
    pub(super) fn push(&mut self, kind: pb::call::Kind, deadline: Instant, answer: Answer) {
        self.next_tag += 1;
        let tag = self.next_tag;
        let pending = Pending {
            generation: UNSENT,
            deadline,
            answer,
        };
        self.pending.insert(tag, pending);
        self.outbox.push_back(pb::Call {
            tag,
            kind: Some(kind),
        });
    }

    pub(super) fn has_unsent(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// The next message of stream `generation`: every call waiting, within the limits of one
    /// message. Empty when none waits.
    pub(super) fn next_batch(&mut self, generation: u64) -> Vec<pb::Call> {
        let mut batch: Vec<pb::Call> = Vec::with_capacity(self.outbox.len().min(MAX_BATCH));
        let mut bytes = 0;
        while let Some(call) = self.outbox.front() {
            // Sizes matter only once a second call would join the first (a single larger call
            // travels alone): a lone caller's message is not measured here at all.
            if let Some(first) = batch.first() {
                if batch.len() == 1 {
                    bytes = first.encoded_len();
                }
                let size = call.encoded_len();
                if batch.len() == MAX_BATCH || bytes + size > MAX_BATCH_BYTES {
                    break;
                }
                bytes += size;
            }
            let Some(call) = self.outbox.pop_front() else {
                break;
            };
            if let Some(pending) = self.pending.get_mut(&call.tag) {
                pending.generation = generation;
            }
            batch.push(call);
        }
        batch
    }

    /// Fails the calls whose deadline has passed with `late()`, and drops those of them not
    /// sent yet.
    pub(super) fn expire(&mut self, now: Instant, late: impl Fn() -> Error) {
        let expired: Vec<Pending> = self
            .pending
            .extract_if(|_, p| p.deadline <= now)
            .map(|(_, p)| p)
            .collect();
        if expired.is_empty() {
            return;
        }
        let pending = &self.pending;
        self.outbox.retain(|call| pending.contains_key(&call.tag));
        for p in expired {
            // The caller may have given up already: nobody to tell is fine.
            let _ = p.answer.send(Err(late()));
        }
    }

    /// Fails the calls not sent yet.
    pub(super) fn fail_unsent(&mut self, error: &Error) {
        let unsent: Vec<u64> = self.outbox.drain(..).map(|c| c.tag).collect();
        for tag in unsent {
            if let Some(pending) = self.pending.remove(&tag) {
                let _ = pending.answer.send(Err(error.clone()));
            }
        }
    }

    /// Hands out the answers in `response`.
    pub(super) fn answer(&mut self, response: pb::PipelineResponse) {
        for reply in response.replies {
            if let (0, Some(pb::reply::Kind::Error(e))) = (reply.tag, &reply.kind) {
                self.refusal = Some(crate::convert::refusal(e));
                continue;
            }
            if let (Some(pending), Some(kind)) = (self.pending.remove(&reply.tag), reply.kind) {
                let _ = pending.answer.send(Ok(kind));
            }
        }
    }

    /// The stream ended with `error`: the calls still waiting fail with it, unless the server
    /// said why already (a refusal of the whole message).
    pub(super) fn ended_by(&mut self, error: Error) {
        self.refusal.get_or_insert(error);
    }

    /// Ends stream `generation` if no call waits on it or for it, so that a call made
    /// meanwhile opens a new stream instead of failing on this one.
    pub(super) fn close_idle(&mut self, generation: u64) -> bool {
        if self.stream != Some(generation)
            || self.live != generation
            || !self.pending.is_empty()
            || !self.outbox.is_empty()
        {
            return false;
        }
        self.stream = None;
        self.live = 0;
        // The body of that stream (its writer) ends when it looks again.
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
        true
    }

    /// Forgets stream `generation` and fails the calls it carried.
    pub(super) fn broken(&mut self, generation: u64) {
        if self.stream == Some(generation) {
            self.stream = None;
        }
        if self.live == generation {
            self.live = 0;
            // The body of that stream ends when it looks again.
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
        let failed: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.generation == generation)
            .map(|(tag, _)| *tag)
            .collect();
        let error = self
            .refusal
            .take()
            .unwrap_or_else(|| Error::Unavailable("the session server closed the pipeline".into()));
        for tag in failed {
            if let Some(pending) = self.pending.remove(&tag) {
                let _ = pending.answer.send(Err(error.clone()));
            }
        }
    }
}

/// Hashes the pipeline's own tags, which count up from 1: a multiplication spreads them over
/// the table at a fraction of SipHash's cost, and nobody else picks them, so there is no
/// flooding to resist.
#[derive(Default)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // 2^64 divided by the golden ratio: consecutive tags land far apart.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
