//! Typed errors: what an app can act on, instead of raw gRPC statuses.

use crate::value::Attribute;
use tonic::Code;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The session is unknown, expired or invalidated: start a new one.
    #[error("session not found")]
    NotFound,
    /// A compare-and-set did not match; `current` is the attribute as it is now (absent when
    /// it does not exist), so the caller can merge and retry.
    #[error("conflict on attribute {name:?}: it changed since it was read")]
    Conflict {
        name: String,
        current: Option<Attribute>,
    },
    /// A size limit of the server was hit; the message says which.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// A bound given by the operation itself (list length, counter range) was hit.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// The attribute holds another kind of value than the operation works on.
    #[error("wrong attribute type: {0}")]
    WrongType(String),
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The server wants a credential this client did not give, or does not accept the one it
    /// gave (a wrong or revoked token): fix the configuration.
    #[error("the session server refused this client's credential: {0}")]
    Unauthenticated(String),
    /// The credential is good but may not do this (an admin token for sessions, another
    /// app's name).
    #[error("the session server does not let this credential do that: {0}")]
    PermissionDenied(String),
    /// The server could not be reached or did not answer in time.
    #[error("session server unavailable: {0}")]
    Unavailable(String),
    /// An attribute's bytes are not what the caller asked to decode.
    #[error("cannot decode attribute {name:?}: {reason}")]
    Decode { name: String, reason: String },
    #[error("session server error ({code:?}): {message}")]
    Server { code: Code, message: String },
}

impl Error {
    /// Whether the failure is the server's absence, as opposed to an answer.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// Whether a write that failed so may still have taken effect: no answer in time, or an
    /// answer that could not be read. Refusals (a conflict, a limit, a bad argument, an
    /// unknown session) changed nothing, since batches are atomic.
    pub fn may_have_applied(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_) | Error::Decode { .. } | Error::Server { .. }
        )
    }
}
