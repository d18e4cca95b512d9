//! The one place that turns protobuf messages into domain types and back. Input is checked
//! here, so the store only ever sees well-formed requests.

use crate::{
    events::{Cursor, Event, EventKind, WatchItem},
    store::{
        Attribute, GetQuery, LimitKind, OpKind, OpResult, Operation, SessionInfo, SessionSnapshot,
        StoreError, Value, WriteOutcome,
    },
};
use bytes::Bytes;
use prost::Message;
use session_proto::v1 as pb;
use tonic::{Code, Status};

/// Longest attribute name accepted.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest content type accepted.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// Most operations in one batch.
pub const MAX_OPS: usize = 1024;
/// Most attribute names in one read.
pub const MAX_NAMES: usize = 1024;
/// Largest `keep` of a recent-push.
pub const MAX_KEEP: u32 = 10_000;

/// A request that is not well-formed (`INVALID_ARGUMENT`), or that asks for a kind of call,
/// operation or value this server does not know (`UNIMPLEMENTED`: protobuf decodes an
/// unknown kind as none, so the two look alike, and the message says both).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    pub message: String,
    /// A kind this server does not know, rather than a malformed request.
    pub unknown: bool,
}

impl InvalidInput {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unknown: false,
        }
    }

    /// A kind missing or unknown: `what` names the field and `known` the kinds this server
    /// speaks (protocol `session_proto::PROTOCOL_VERSION`).
    pub fn unknown(what: String, known: &str) -> Self {
        Self {
            message: format!(
                "{what} is none this server knows (protocol {}: {known}); a newer client's, or none was set",
                session_proto::PROTOCOL_VERSION
            ),
            unknown: true,
        }
    }
}

fn check_content_type(ct: &str) -> Result<(), InvalidInput> {
    if ct.len() > MAX_CONTENT_TYPE_LEN {
        return Err(InvalidInput::new(format!(
            "content type is longer than {MAX_CONTENT_TYPE_LEN} bytes"
        )));
    }
    Ok(())
}

/// Decoded `bytes` fields are slices of the whole receive buffer; a stored value must own
/// exactly its bytes, or each small value would pin a large network buffer in memory.
fn owned(b: Bytes) -> Bytes {
    Bytes::copy_from_slice(&b)
}

impl TryFrom<pb::Value> for Value {
    type Error = InvalidInput;

    fn try_from(v: pb::Value) -> Result<Self, Self::Error> {
        check_content_type(&v.content_type)?;
        Ok(match v.kind {
            Some(pb::value::Kind::Bytes(data)) => Value::Bytes {
                content_type: v.content_type.into(),
                data: owned(data),
            },
            Some(pb::value::Kind::List(list)) => Value::List {
                content_type: v.content_type.into(),
                items: list.items.into_iter().map(owned).collect(),
            },
            Some(pb::value::Kind::Counter(c)) => Value::Counter(c),
            None => {
                return Err(InvalidInput::unknown(
                    "the value's kind".into(),
                    "bytes, list, counter",
                ));
            }
        })
    }
}

impl From<Value> for pb::Value {
    fn from(v: Value) -> Self {
        match v {
            Value::Bytes { content_type, data } => pb::Value {
                content_type: content_type.to_string(),
                kind: Some(pb::value::Kind::Bytes(data)),
            },
            Value::List {
                content_type,
                items,
            } => pb::Value {
                content_type: content_type.to_string(),
                kind: Some(pb::value::Kind::List(pb::ValueList { items })),
            },
            Value::Counter(c) => pb::Value {
                content_type: String::new(),
                kind: Some(pb::value::Kind::Counter(c)),
            },
        }
    }
}

impl TryFrom<pb::Operation> for Operation {
    type Error = InvalidInput;

    fn try_from(op: pb::Operation) -> Result<Self, Self::Error> {
        use pb::operation::Kind;
        if op.name.is_empty() || op.name.len() > MAX_NAME_LEN {
            return Err(InvalidInput::new(format!(
                "attribute name must be 1 to {MAX_NAME_LEN} bytes long"
            )));
        }
        let kind = match op.kind {
            Some(Kind::Set(set)) => OpKind::Set {
                value: set
                    .value
                    .ok_or_else(|| InvalidInput::new(format!("set of {:?} has no value", op.name)))?
                    .try_into()?,
                expected_version: set.expected_version,
            },
            Some(Kind::Remove(r)) => OpKind::Remove {
                expected_version: r.expected_version,
            },
            Some(Kind::ListPush(p)) => {
                check_content_type(&p.content_type)?;
                OpKind::ListPush {
                    item: owned(p.item),
                    content_type: p.content_type,
                    max_len: (p.max_len > 0).then_some(p.max_len),
                }
            }
            Some(Kind::ListRemove(r)) => OpKind::ListRemove { item: r.item },
            Some(Kind::RecentPush(p)) => {
                check_content_type(&p.content_type)?;
                if p.keep == 0 || p.keep > MAX_KEEP {
                    return Err(InvalidInput::new(format!(
                        "recent push on {:?}: keep must be 1 to {MAX_KEEP}",
                        op.name
                    )));
                }
                OpKind::RecentPush {
                    item: owned(p.item),
                    content_type: p.content_type,
                    keep: p.keep,
                }
            }
            Some(Kind::CounterAdd(c)) => OpKind::CounterAdd {
                delta: c.delta,
                min: c.min,
                max: c.max,
                remove_at_zero: c.remove_at_zero,
            },
            None => {
                return Err(InvalidInput::unknown(
                    format!("the kind of the operation on {:?}", op.name),
                    "set, remove, list_push, list_remove, recent_push, counter_add",
                ));
            }
        };
        Ok(Operation {
            name: op.name,
            kind,
        })
    }
}

/// Converts a batch, checking its length.
pub fn operations(ops: Vec<pb::Operation>) -> Result<Vec<Operation>, InvalidInput> {
    if ops.len() > MAX_OPS {
        return Err(InvalidInput::new(format!(
            "a batch holds at most {MAX_OPS} operations"
        )));
    }
    // Not `collect`: it would reuse the request's larger buffer, then reallocate to shrink it.
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push(Operation::try_from(op)?);
    }
    Ok(out)
}

impl TryFrom<pb::GetRequest> for GetQuery {
    type Error = InvalidInput;

    /// Names are checked and each kept once: a read copies each named attribute while the
    /// store holds its lock, so a name given 60,000 times must not mean 60,000 copies.
    fn try_from(req: pb::GetRequest) -> Result<Self, Self::Error> {
        let mut names = req.names;
        if names.len() > MAX_NAMES {
            return Err(InvalidInput::new(format!(
                "a read names at most {MAX_NAMES} attributes"
            )));
        }
        if names.len() > 1 {
            names.sort_unstable();
            names.dedup();
        }
        Ok(GetQuery {
            names,
            known_version: (req.known_version > 0).then_some(req.known_version),
        })
    }
}

impl From<SessionInfo> for pb::SessionInfo {
    fn from(i: SessionInfo) -> Self {
        let id = i.id.text();
        info(i, id)
    }
}

/// `i` with its id spelled `id`: a caller that holds the text already saves encoding it.
pub fn info(i: SessionInfo, id: String) -> pb::SessionInfo {
    pb::SessionInfo {
        id,
        reference: i.reference,
        version: i.version,
        created_at_ms: i.created_at_ms as i64,
        last_access_ms: i.last_access_ms as i64,
        idle_timeout_ms: i.idle_timeout_ms,
        max_lifetime_ms: i.max_lifetime_ms,
        size_bytes: i.size_bytes,
    }
}

fn attribute(name: String, a: Attribute) -> pb::Attribute {
    pb::Attribute {
        name,
        value: Some(a.value.into()),
        version: a.version,
    }
}

impl From<SessionSnapshot> for pb::Session {
    fn from(s: SessionSnapshot) -> Self {
        let id = s.info.id.text();
        session(s, id)
    }
}

/// `s` with its id spelled `id` (see [`info`]).
pub fn session(s: SessionSnapshot, id: String) -> pb::Session {
    pb::Session {
        info: Some(info(s.info, id)),
        attributes: s
            .attributes
            .into_iter()
            .map(|(name, a)| attribute(name, a))
            .collect(),
    }
}

impl From<OpResult> for pb::OpResult {
    fn from(r: OpResult) -> Self {
        pb::OpResult {
            attribute_version: r.attribute_version,
            counter: r.counter,
            list_len: r.list_len,
            removed: r.removed,
        }
    }
}

impl From<WriteOutcome> for pb::WriteResponse {
    fn from(w: WriteOutcome) -> Self {
        let id = w.info.id.text();
        write_response(w, id)
    }
}

/// `w` with its id spelled `id` (see [`info`]).
pub fn write_response(w: WriteOutcome, id: String) -> pb::WriteResponse {
    pb::WriteResponse {
        info: Some(info(w.info, id)),
        results: w.results.into_iter().map(Into::into).collect(),
        session: w.session.map(Into::into),
    }
}

impl From<EventKind> for pb::EventKind {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Created => pb::EventKind::Created,
            EventKind::Changed => pb::EventKind::Changed,
            EventKind::Expired => pb::EventKind::Expired,
            EventKind::Evicted => pb::EventKind::Evicted,
            EventKind::Invalidated => pb::EventKind::Invalidated,
            EventKind::IdRotated => pb::EventKind::IdRotated,
        }
    }
}

/// An event as watchers get it: by the session's reference, never its id, with the cursor
/// that resumes after it.
pub fn event(e: &Event, cursor: Cursor) -> pb::Event {
    pb::Event {
        seq: e.seq,
        kind: pb::EventKind::from(e.kind) as i32,
        session_id: String::new(),
        version: e.version,
        changed: e.changed.clone(),
        new_id: String::new(),
        at_ms: e.at_ms as i64,
        reference: e.reference,
        new_reference: e.new_reference,
        cursor: cursor.to_bytes(),
    }
}

/// A watch stream's item of the log of `epoch`, with what the store says of itself in hellos.
pub fn watch_response(item: WatchItem, epoch: u64, durable: bool) -> pb::WatchResponse {
    let kind = match item {
        WatchItem::Hello(h) => pb::watch_response::Kind::Hello(pb::WatchHello {
            server_epoch: h.server_epoch,
            next_seq: h.next_seq,
            resumed: h.resumed,
            durable,
            cursor: h.cursor().to_bytes(),
        }),
        WatchItem::Event(e) => {
            let after = Cursor {
                epoch,
                next_seq: e.seq + 1,
            };
            pb::watch_response::Kind::Event(event(&e, after))
        }
    };
    pb::WatchResponse { kind: Some(kind) }
}

/// Why a call failed, before any protocol says how: a request that is not well-formed, or
/// the store's refusal. The framed pipeline answers it as a `CallError` ([`call_error`]),
/// gRPC as a status, each at its own edge.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller's app is over its rate (`rate` calls a second).
    #[error("app {app:?} is over its rate of {rate} calls a second (its quota); try again shortly")]
    RateLimited { app: String, rate: u32 },
}

impl CallFailure {
    pub fn code(&self) -> Code {
        match self {
            CallFailure::Invalid(e) if e.unknown => Code::Unimplemented,
            CallFailure::Invalid(_) => Code::InvalidArgument,
            CallFailure::RateLimited { .. } => Code::ResourceExhausted,
            CallFailure::Store(e) => match e {
                StoreError::NotFound => Code::NotFound,
                StoreError::Conflict { .. } => Code::Aborted,
                StoreError::WrongType { .. } => Code::FailedPrecondition,
                StoreError::OutOfRange { .. } => Code::OutOfRange,
                StoreError::LimitExceeded { .. } => Code::ResourceExhausted,
                StoreError::Storage(_) => Code::Unavailable,
            },
        }
    }
}

/// A call's failure as the pipeline answers it: the unary RPC's status code and message, and
/// for a conflict the attribute as it is now (a `Conflict` in `details`).
pub fn call_error(failure: &CallFailure) -> pb::CallError {
    let details = match failure {
        CallFailure::Store(StoreError::Conflict {
            index,
            name,
            current,
        }) => pb::Conflict {
            operation_index: *index as u32,
            current: current.clone().map(|a| attribute(name.clone(), a)),
        }
        .encode_to_vec()
        .into(),
        _ => Bytes::new(),
    };
    pb::CallError {
        code: failure.code() as i32,
        message: message(failure),
        details,
    }
}

/// An error that is no call's own (a whole message refused, a connection turned away).
pub fn refused(code: Code, message: String) -> pb::CallError {
    pb::CallError {
        code: code as i32,
        message,
        details: Bytes::new(),
    }
}

fn message(failure: &CallFailure) -> String {
    let e = match failure {
        CallFailure::Invalid(e) => return e.message.clone(),
        CallFailure::RateLimited { .. } => return failure.to_string(),
        CallFailure::Store(e) => e,
    };
    match e {
        StoreError::NotFound => "session not found: unknown, expired or invalidated".into(),
        StoreError::LimitExceeded {
            which,
            limit,
            wanted,
            attr,
        } => {
            let what = match which {
                LimitKind::Session => "session size limit (--max-session-size)".to_owned(),
                LimitKind::Attribute => format!(
                    "attribute size limit (--max-attribute-size) on {:?}",
                    attr.as_deref().unwrap_or_default()
                ),
                LimitKind::Sessions => {
                    return format!(
                        "the store holds {limit} sessions, the most it can; try again when some have expired"
                    );
                }
                LimitKind::BatchWork => {
                    return format!(
                        "batch work limit exceeded: the batch looks at more than {limit} list items (at least {wanted}); split it"
                    );
                }
            };
            format!("{what} exceeded: the write needs {wanted} bytes, the limit is {limit}")
        }
        other => other.to_string(),
    }
}

/// The gRPC edge: the status a unary RPC answers with, the same as the pipeline's `CallError`.
impl From<CallFailure> for Status {
    fn from(failure: CallFailure) -> Self {
        let e = call_error(&failure);
        Status::with_details(failure.code(), e.message, e.details)
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        CallFailure::Store(e).into()
    }
}

impl From<InvalidInput> for Status {
    fn from(e: InvalidInput) -> Self {
        CallFailure::Invalid(e).into()
    }
}
