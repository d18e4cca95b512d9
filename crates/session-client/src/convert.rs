//! The one place where protobuf meets the client's own types: requests built from them,
//! replies and events turned into them, and every error the server can send mapped to an
//! [`Error`] (the framed pipeline's `CallError` directly; a gRPC `Status` at its own edge).

use crate::{
    decode::JSON,
    error::Error,
    event::{Cursor, Event, EventKind, WatchHello, WatchItem},
    id::{SessionId, SessionRef},
    ops::{OpKind, Operation, Ops},
    value::{Attribute, OpResult, Session, SessionInfo, Value, WriteResult},
};
use prost::Message;
use session_proto::v1::{self as pb, call::Kind as Call, reply::Kind as Reply};
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tonic::{Code, Status};

// Requests.

pub(crate) fn create(
    ops: Ops,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    return_session: bool,
) -> Call {
    let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis() as u64);
    Call::Create(pb::CreateRequest {
        operations: operations(ops),
        idle_timeout_ms: ms(idle_timeout),
        max_lifetime_ms: ms(max_lifetime),
        returning: returning(return_session),
    })
}

pub(crate) fn get(id: &str, names: &[&str], known_version: u64) -> Call {
    Call::Get(pb::GetRequest {
        id: id.to_owned(),
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        known_version,
    })
}

pub(crate) fn apply(id: &str, ops: Ops, return_session: bool) -> Call {
    Call::Apply(pb::ApplyRequest {
        id: id.to_owned(),
        operations: operations(ops),
        returning: returning(return_session),
    })
}

pub(crate) fn invalidate(id: &str) -> Call {
    Call::Invalidate(pb::InvalidateRequest { id: id.to_owned() })
}

pub(crate) fn rotate_id(id: &str) -> Call {
    Call::RotateId(pb::RotateIdRequest { id: id.to_owned() })
}

pub(crate) fn watch(from: &Cursor, skip_origin: u64) -> pb::WatchRequest {
    pb::WatchRequest {
        server_epoch: 0,
        after_seq: 0,
        skip_origin,
        cursor: from.0.clone(),
    }
}

fn returning(session: bool) -> i32 {
    if session {
        pb::Returning::Session as i32
    } else {
        pb::Returning::Info as i32
    }
}

fn operations(ops: Ops) -> Vec<pb::Operation> {
    ops.ops.into_iter().map(operation).collect()
}

fn operation(op: Operation) -> pb::Operation {
    use pb::operation::Kind as K;
    let kind = match op.kind {
        OpKind::Set {
            content_type,
            data,
            expected_version,
        } => K::Set(pb::SetOp {
            value: Some(pb::Value {
                content_type,
                kind: Some(pb::value::Kind::Bytes(data)),
            }),
            expected_version,
        }),
        OpKind::Remove => K::Remove(pb::RemoveOp {
            expected_version: None,
        }),
        OpKind::ListPush { item, max_len } => K::ListPush(pb::ListPushOp {
            item,
            content_type: JSON.into(),
            max_len: max_len.unwrap_or(0),
        }),
        OpKind::ListRemove { item } => K::ListRemove(pb::ListRemoveOp { item }),
        OpKind::RecentPush { item, keep } => K::RecentPush(pb::RecentPushOp {
            item,
            content_type: JSON.into(),
            keep,
        }),
        OpKind::CounterAdd { delta, min, max } => K::CounterAdd(pb::CounterAddOp {
            delta,
            min,
            max,
            remove_at_zero: false,
        }),
    };
    pb::Operation {
        name: op.name,
        kind: Some(kind),
    }
}

// Replies.

pub(crate) fn written(reply: Reply) -> Result<WriteResult, Error> {
    let Reply::Write(w) = reply else {
        return Err(unexpected(reply));
    };
    Ok(WriteResult {
        info: info(w.info.unwrap_or_default()),
        results: w.results.into_iter().map(op_result).collect(),
        session: w.session.map(session).transpose()?,
    })
}

/// `None` when the server said the session is still at the version the caller knows.
pub(crate) fn got(reply: Reply) -> Result<Option<Session>, Error> {
    let Reply::Get(g) = reply else {
        return Err(unexpected(reply));
    };
    if g.not_modified {
        return Ok(None);
    }
    session(g.session.unwrap_or_default()).map(Some)
}

/// The reference the invalidated session had.
pub(crate) fn invalidated(reply: Reply) -> Result<SessionRef, Error> {
    match reply {
        Reply::Invalidate(r) => Ok(SessionRef::new(r.reference)),
        other => Err(unexpected(other)),
    }
}

/// The session under its new id, and the reference it had before.
pub(crate) fn rotated(reply: Reply) -> Result<(SessionInfo, SessionRef), Error> {
    match reply {
        Reply::RotateId(r) => Ok((
            info(r.info.unwrap_or_default()),
            SessionRef::new(r.previous_reference),
        )),
        other => Err(unexpected(other)),
    }
}

/// A reply of another kind than the call's: the server's error, or a broken server.
fn unexpected(reply: Reply) -> Error {
    match reply {
        Reply::Error(e) => call_error(e),
        _ => Error::Server {
            code: Code::Internal,
            message: "the server answered with another kind of reply".into(),
        },
    }
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn info(i: pb::SessionInfo) -> SessionInfo {
    SessionInfo {
        id: SessionId::from(i.id),
        reference: SessionRef::new(i.reference),
        version: i.version,
        created_at: at(i.created_at_ms),
        last_access: at(i.last_access_ms),
        idle_timeout: Duration::from_millis(i.idle_timeout_ms),
        max_lifetime: Duration::from_millis(i.max_lifetime_ms),
        size_bytes: i.size_bytes,
    }
}

fn session(s: pb::Session) -> Result<Session, Error> {
    let attributes = s
        .attributes
        .into_iter()
        .map(|a| Ok((a.name.clone(), attribute(a)?)))
        .collect::<Result<_, Error>>()?;
    Ok(Session {
        info: info(s.info.unwrap_or_default()),
        attributes: Arc::new(attributes),
    })
}

fn attribute(a: pb::Attribute) -> Result<Attribute, Error> {
    let value = a.value.unwrap_or_default();
    let value = match value.kind {
        Some(pb::value::Kind::Bytes(data)) => Value::Bytes {
            content_type: value.content_type,
            data,
        },
        Some(pb::value::Kind::List(l)) => Value::List {
            content_type: value.content_type,
            items: l.items,
        },
        Some(pb::value::Kind::Counter(c)) => Value::Counter(c),
        None => {
            return Err(Error::Decode {
                name: a.name,
                reason: "value has no kind".into(),
            });
        }
    };
    Ok(Attribute {
        value,
        version: a.version,
    })
}

fn op_result(r: pb::OpResult) -> OpResult {
    OpResult {
        attribute_version: r.attribute_version,
        counter: r.counter,
        list_len: r.list_len,
        removed: r.removed,
    }
}

// Events.

pub(crate) fn watch_item(response: pb::WatchResponse) -> Result<WatchItem, Error> {
    use pb::watch_response::Kind;
    match response.kind {
        Some(Kind::Hello(h)) => Ok(WatchItem::Hello(WatchHello {
            server_epoch: h.server_epoch,
            next_seq: h.next_seq,
            resumed: h.resumed,
            durable: h.durable,
            cursor: Cursor(h.cursor),
        })),
        Some(Kind::Event(e)) => Ok(event(e)),
        None => Err(Error::Server {
            code: Code::Internal,
            message: "the server sent an empty watch message".into(),
        }),
    }
}

fn event(e: pb::Event) -> WatchItem {
    let kind = match pb::EventKind::try_from(e.kind) {
        Ok(pb::EventKind::Created) => EventKind::Created,
        Ok(pb::EventKind::Changed) => EventKind::Changed,
        Ok(pb::EventKind::Expired) => EventKind::Expired,
        Ok(pb::EventKind::Evicted) => EventKind::Evicted,
        Ok(pb::EventKind::Invalidated) => EventKind::Invalidated,
        Ok(pb::EventKind::IdRotated) => EventKind::IdRotated,
        Ok(pb::EventKind::Unspecified) | Err(_) => {
            return WatchItem::Unknown {
                seq: e.seq,
                cursor: Cursor(e.cursor),
            };
        }
    };
    WatchItem::Event(Event {
        seq: e.seq,
        kind,
        reference: SessionRef::new(e.reference),
        version: e.version,
        changed: e.changed,
        new_reference: (e.new_reference != 0).then(|| SessionRef::new(e.new_reference)),
        at: at(e.at_ms),
        cursor: Cursor(e.cursor),
    })
}

// Errors.

/// What the server answered a call with instead of a reply.
pub(crate) fn call_error(e: pb::CallError) -> Error {
    error(Code::from_i32(e.code), e.message, &e.details)
}

/// Why the server refused a whole connection or message (a refused hello, a reply of tag 0):
/// credentials as such, anything else as the server being unusable for now.
pub(crate) fn refusal(e: &pb::CallError) -> Error {
    match Code::from_i32(e.code) {
        Code::Unauthenticated => Error::Unauthenticated(e.message.clone()),
        Code::PermissionDenied => Error::PermissionDenied(e.message.clone()),
        _ => Error::Unavailable(format!("the session server refused: {}", e.message)),
    }
}

/// A gRPC status, where gRPC carried the call (the watch stream, the `Pipeline` RPC, the
/// in-process service).
pub(crate) fn status(status: Status) -> Error {
    error(status.code(), status.message().to_owned(), status.details())
}

fn error(code: Code, message: String, details: &[u8]) -> Error {
    match code {
        Code::NotFound => Error::NotFound,
        Code::Aborted => match pb::Conflict::decode(details) {
            Ok(conflict) => {
                let current = conflict
                    .current
                    .and_then(|a| Some((a.name.clone(), attribute(a).ok()?)));
                Error::Conflict {
                    name: current.as_ref().map(|(n, _)| n.clone()).unwrap_or_default(),
                    current: current.map(|(_, a)| a),
                }
            }
            Err(_) => Error::Server {
                code: Code::Aborted,
                message,
            },
        },
        Code::ResourceExhausted => Error::LimitExceeded(message),
        Code::OutOfRange => Error::OutOfRange(message),
        Code::FailedPrecondition => Error::WrongType(message),
        Code::InvalidArgument => Error::InvalidArgument(message),
        Code::Unauthenticated => Error::Unauthenticated(message),
        Code::PermissionDenied => Error::PermissionDenied(message),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Error::Unavailable(message),
        code => Error::Server { code, message },
    }
}
