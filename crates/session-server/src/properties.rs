//! Property tests of everything that reads client input: the framed decoder, the pipeline's
//! batch handling and every protobuf → domain conversion, with arbitrary input. None may
//! panic, and every refusal must be the client's fault (never INTERNAL or UNKNOWN).
//!
//! CI runs 256 cases of each (a few seconds); for a long run:
//! `PROPTEST_CASES=200000 cargo test --release -p session-server --lib properties`.

use crate::{
    Engine,
    config::ServerConfig,
    convert,
    service::{Answering, MAX_CALLS},
    store::{GetQuery, SessionStore},
};
use bytes::BytesMut;
use futures_util::FutureExt;
use proptest::{collection::vec, option, prelude::*};
use prost::Message;
use session_proto::v1 as pb;
use tokio_util::codec::Decoder;

/// Codes a refused call may get: each says what the client did wrong.
const CLIENT_CODES: [tonic::Code; 7] = [
    tonic::Code::InvalidArgument,
    // A kind this server does not know (or none).
    tonic::Code::Unimplemented,
    tonic::Code::NotFound,
    tonic::Code::Aborted,
    tonic::Code::FailedPrecondition,
    tonic::Code::OutOfRange,
    tonic::Code::ResourceExhausted,
];

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,8}",
        proptest::string::string_regex(&format!(".{{0,{max}}}")).expect("regex"),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = bytes::Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Into::into)
}

fn value() -> impl Strategy<Value = pb::Value> {
    let kind = prop_oneof![
        bytes(300).prop_map(pb::value::Kind::Bytes),
        vec(bytes(40), 0..20).prop_map(|items| pb::value::Kind::List(pb::ValueList { items })),
        any::<i64>().prop_map(pb::value::Kind::Counter),
    ];
    (text(300), option::of(kind)).prop_map(|(content_type, kind)| pb::Value { content_type, kind })
}

fn operation() -> impl Strategy<Value = pb::Operation> {
    use pb::operation::Kind;
    let kind = prop_oneof![
        (option::of(value()), option::of(any::<u64>())).prop_map(|(value, expected_version)| {
            Kind::Set(pb::SetOp {
                value,
                expected_version,
            })
        }),
        option::of(0..4u64)
            .prop_map(|expected_version| Kind::Remove(pb::RemoveOp { expected_version })),
        (bytes(40), text(300), any::<u32>()).prop_map(|(item, content_type, max_len)| {
            Kind::ListPush(pb::ListPushOp {
                item,
                content_type,
                max_len: max_len % 8,
            })
        }),
        bytes(40).prop_map(|item| Kind::ListRemove(pb::ListRemoveOp { item })),
        (bytes(40), text(300), any::<u32>()).prop_map(|(item, content_type, keep)| {
            Kind::RecentPush(pb::RecentPushOp {
                item,
                content_type,
                keep,
            })
        }),
        (
            any::<i64>(),
            option::of(any::<i64>()),
            option::of(any::<i64>()),
            any::<bool>()
        )
            .prop_map(|(delta, min, max, remove_at_zero)| {
                Kind::CounterAdd(pb::CounterAddOp {
                    delta,
                    min,
                    max,
                    remove_at_zero,
                })
            }),
    ];
    // A few short names, so operations meet each other's attributes, and arbitrary ones.
    let name = prop_oneof![3 => "[ab]", 1 => text(1100)];
    (name, option::of(kind)).prop_map(|(name, kind)| pb::Operation { name, kind })
}

fn call(id: String) -> impl Strategy<Value = pb::Call> {
    use pb::call::Kind;
    let id = prop_oneof![Just(id), text(60)];
    let kind = (
        id,
        vec(operation(), 0..6),
        vec(text(20), 0..4),
        any::<u64>(),
    )
        .prop_flat_map(|(id, operations, names, number)| {
            prop_oneof![
                Just(Kind::Create(pb::CreateRequest {
                    operations: operations.clone(),
                    idle_timeout_ms: number,
                    max_lifetime_ms: number.rotate_left(7),
                    returning: (number % 3) as i32,
                })),
                Just(Kind::Get(pb::GetRequest {
                    id: id.clone(),
                    names,
                    known_version: number % 4,
                })),
                Just(Kind::Apply(pb::ApplyRequest {
                    id: id.clone(),
                    operations,
                    returning: (number % 3) as i32,
                })),
                Just(Kind::Invalidate(pb::InvalidateRequest { id: id.clone() })),
                Just(Kind::RotateId(pb::RotateIdRequest { id })),
            ]
        });
    (any::<u64>(), option::of(kind)).prop_map(|(tag, kind)| pb::Call { tag, kind })
}

/// Stands for the id of the test's session in generated calls.
const HERE: &str = "@";

fn here_is(call: &mut pb::Call, id: &str) {
    use pb::call::Kind;
    let named = match &mut call.kind {
        Some(Kind::Get(r)) => &mut r.id,
        Some(Kind::Apply(r)) => &mut r.id,
        Some(Kind::Invalidate(r)) => &mut r.id,
        Some(Kind::RotateId(r)) => &mut r.id,
        Some(Kind::Create(_)) | None => return,
    };
    if named == HERE {
        *named = id.to_owned();
    }
}

/// The caller every call of these tests runs as: the default app of a server without
/// authentication.
fn caller(engine: &Engine) -> crate::auth::Caller {
    engine
        .auth
        .authenticate(Default::default())
        .expect("no authentication")
}

/// An engine with one session, and its id.
fn engine() -> (Engine, String) {
    let engine = Engine::new(&ServerConfig::default());
    let created = engine
        .store
        .create(caller(&engine).app.id, Default::default(), Vec::new())
        .now_or_never()
        .expect("the memory store answers at once")
        .expect("create");
    let id = created.info.id.text();
    (engine, id)
}

/// Answers `batch` as a framed connection would; returns every reply.
fn answer(engine: &Engine, batch: pb::PipelineRequest) -> Vec<pb::Reply> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let service = engine.service();
    runtime.block_on(async {
        let mut answering = match Answering::new(batch, caller(engine)) {
            Ok(answering) => answering,
            Err(refused) => return refused.replies,
        };
        let mut replies = Vec::new();
        while let Some(response) = service.next_response(&mut answering).await {
            replies.extend(response.replies);
        }
        replies
    })
}

fn assert_client_code(reply: &pb::Reply) {
    if let Some(pb::reply::Kind::Error(e)) = &reply.kind {
        let code = tonic::Code::from_i32(e.code);
        assert!(CLIENT_CODES.contains(&code), "{code:?}: {}", e.message);
    }
}

proptest! {
    #[test]
    fn any_batch_of_calls_gets_one_reply_per_call_and_only_client_errors(
        mut calls in vec(call(HERE.into()), 0..12),
        origin in any::<u64>(),
    ) {
        let (engine, id) = engine();
        calls.iter_mut().for_each(|c| here_is(c, &id));
        let tags: Vec<u64> = calls.iter().map(|c| c.tag).collect();
        let replies = answer(&engine, pb::PipelineRequest { calls, origin, hello: None });
        prop_assert_eq!(replies.iter().map(|r| r.tag).collect::<Vec<_>>(), tags);
        replies.iter().for_each(assert_client_code);
    }

    #[test]
    fn operations_convert_or_are_invalid_and_then_apply_or_fail_cleanly(
        ops in vec(operation(), 0..10),
    ) {
        let (engine, id) = engine();
        let id = crate::id::SessionId::parse(&id).expect("id");
        match convert::operations(ops) {
            Err(invalid) => prop_assert!(!invalid.message.is_empty()),
            Ok(ops) => {
                let app = caller(&engine).app.id;
                let result = engine.store.apply(app, &id, ops, true).now_or_never().expect("ready");
                if let Err(e) = result {
                    let status = tonic::Status::from(e);
                    prop_assert!(CLIENT_CODES.contains(&status.code()), "{:?}", status);
                }
            }
        }
    }

    #[test]
    fn reads_convert_or_are_invalid(names in vec(text(30), 0..1500), known in any::<u64>()) {
        let request = pb::GetRequest { id: String::new(), names: names.clone(), known_version: known };
        match GetQuery::try_from(request) {
            Ok(query) => {
                prop_assert!(names.len() <= 1024);
                prop_assert!(query.names.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
            }
            Err(_) => prop_assert!(names.len() > 1024),
        }
    }

    /// Arbitrary bytes through the framed decoder: whole frames come out exactly when
    /// `holds_a_frame` says one is there, and whatever decodes as a request is answered.
    #[test]
    fn the_framed_decoder_takes_any_bytes(
        chunks in vec(vec(any::<u8>(), 0..64), 0..8),
        framed in vec(vec(call(HERE.into()), 0..4), 0..3),
    ) {
        let (engine, id) = engine();
        let mut codec = crate::framed::codec(1 << 16);
        let mut buffer = BytesMut::new();
        // Real frames of real requests, then noise.
        for mut calls in framed {
            calls.iter_mut().for_each(|c| here_is(c, &id));
            let request = pb::PipelineRequest { calls, origin: 1, hello: None };
            prop_assert!(session_proto::put_frame(&mut buffer, &request));
        }
        for chunk in chunks {
            buffer.extend_from_slice(&chunk);
        }
        loop {
            let whole = crate::framed::holds_a_frame(&buffer);
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => {
                    prop_assert!(whole);
                    if let Ok(request) = pb::PipelineRequest::decode(frame.freeze()) {
                        prop_assume!(request.calls.len() <= MAX_CALLS);
                        answer(&engine, request).iter().for_each(assert_client_code);
                    }
                }
                Ok(None) => {
                    prop_assert!(!whole);
                    break;
                }
                Err(e) => {
                    // Only a frame over the limit is an error: the server answers
                    // RESOURCE_EXHAUSTED and closes.
                    prop_assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                    break;
                }
            }
        }
    }
}
