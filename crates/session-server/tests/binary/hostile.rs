//! What an attacker on the same machine could send with the published .proto and a few lines
//! of script. Each test checks the attacker's answer, that another client is still served
//! within its timeout meanwhile, and the server's resident memory against `--capacity` plus
//! the bounds docs/operations.md lists.

use super::{Running, start, wait_serving};
use prost::Message;
use session_client::{ClientConfig, Ops, Protocol, SessionClient, SessionId};
use session_proto::{FRAMED_PREFACE, v1 as pb};
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

/// What a well-behaved client waits for an answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

impl Running {
    fn addr(&self) -> String {
        self.grpc.trim_start_matches("http://").to_owned()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, from /proc.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status (Linux)");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        kb * 1024
    }

    /// User and system CPU time so far, from /proc (in clock ticks of 10 ms).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }

    fn client(&self, protocol: Protocol) -> SessionClient {
        SessionClient::connect_lazy(ClientConfig {
            endpoints: vec![self.grpc.clone()],
            timeout: CLIENT_TIMEOUT,
            protocol,
            ..ClientConfig::default()
        })
        .expect("client")
    }

    /// A plain gRPC client, as a script with the published .proto would make.
    async fn grpc_client(
        &self,
    ) -> pb::session_service_client::SessionServiceClient<tonic::transport::Channel> {
        pb::session_service_client::SessionServiceClient::connect(self.grpc.clone())
            .await
            .expect("connect")
            .max_decoding_message_size(usize::MAX)
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body")
    }
}

/// A value of `len` bytes, as the wire carries it.
fn bytes_value(len: usize) -> pb::Value {
    pb::Value {
        content_type: String::new(),
        kind: Some(pb::value::Kind::Bytes(vec![b'x'; len].into())),
    }
}

fn set(name: &str, value: pb::Value) -> pb::Operation {
    pb::Operation {
        name: name.into(),
        kind: Some(pb::operation::Kind::Set(pb::SetOp {
            value: Some(value),
            expected_version: None,
        })),
    }
}

/// A session of four attributes of 250 KiB: about 1 MiB, the default session limit.
async fn one_mib_session(server: &Running) -> SessionId {
    let client = server.client(Protocol::Framed);
    let mut ops = Ops::new();
    for i in 0..4 {
        ops = ops.set_bytes(
            &format!("big{i}"),
            "application/octet-stream",
            vec![7u8; 250 * 1024].into(),
            None,
        );
    }
    client.create(ops).await.expect("a 1 MiB session").info.id
}

fn framed_message(request: &pb::PipelineRequest) -> Vec<u8> {
    let mut out = prost::bytes::BytesMut::new();
    assert!(session_proto::put_frame(&mut out, request));
    out.to_vec()
}

/// Reads framed responses until `calls` replies came or the server closed.
fn read_replies(conn: &mut TcpStream, calls: usize) -> Vec<pb::Reply> {
    let mut replies = Vec::new();
    while replies.len() < calls {
        let mut length = [0; 4];
        if conn.read_exact(&mut length).is_err() {
            break;
        }
        let mut message = vec![0; u32::from_be_bytes(length) as usize];
        conn.read_exact(&mut message).expect("a whole message");
        replies.extend(
            pb::PipelineResponse::decode(&message[..])
                .expect("a response")
                .replies,
        );
    }
    replies
}

fn error_code(reply: &pb::Reply) -> Option<tonic::Code> {
    match &reply.kind {
        Some(pb::reply::Kind::Error(e)) => Some(tonic::Code::from_i32(e.code)),
        _ => None,
    }
}

/// A well-behaved client's read, timed: it must be answered within its timeout while an
/// attack goes on.
async fn bystander_reads(client: &SessionClient, id: &str) {
    let started = Instant::now();
    client
        .get_names(id, &["small"])
        .await
        .unwrap_or_else(|e| panic!("a bystander's read failed during the attack: {e}"));
    assert!(started.elapsed() < CLIENT_TIMEOUT);
}

async fn bystander(server: &Running) -> (SessionClient, SessionId) {
    let client = server.client(Protocol::Framed);
    let id = client
        .create(Ops::new().set_json("small", &1).expect("json"))
        .await
        .expect("create")
        .info
        .id;
    (client, id)
}

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn a_thousand_reads_of_a_1_mib_session_in_one_message_are_bounded_on_both_protocols() {
    let server = start(&["--capacity", "64MiB", "--max-batch-reply", "8MiB"]);
    wait_serving(&server.grpc).await;
    let big = one_mib_session(&server).await;
    let (client, small) = bystander(&server).await;
    let gets = |n: usize| pb::PipelineRequest {
        calls: (1..=n as u64)
            .map(|tag| pb::Call {
                tag,
                kind: Some(pb::call::Kind::Get(pb::GetRequest {
                    id: big.as_str().to_owned(),
                    ..Default::default()
                })),
            })
            .collect(),
        origin: 0,
        hello: None,
    };
    let request = framed_message(&gets(1_000));
    assert!(
        request.len() < 100_000,
        "a small message: {} bytes",
        request.len()
    );

    // Three attackers send it and read nothing: the server must not build the replies.
    let mut attackers: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut conn = TcpStream::connect(server.addr()).expect("connect");
            conn.write_all(FRAMED_PREFACE).expect("preface");
            conn.write_all(&request).expect("request");
            conn
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    bystander_reads(&client, &small).await;
    let rss = server.rss_bytes();
    assert!(rss < 64 * MIB + 100 * MIB, "RSS {} MiB", rss / MIB);

    // One reads its replies: about 8 MiB of sessions, then RESOURCE_EXHAUSTED for the rest.
    let conn = &mut attackers[0];
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let replies = read_replies(conn, 1_000);
    assert_eq!(replies.len(), 1_000, "every call answered");
    let answered = replies.iter().filter(|r| error_code(r).is_none()).count();
    let refused = replies
        .iter()
        .filter(|r| error_code(r) == Some(tonic::Code::ResourceExhausted))
        .count();
    assert!((7..=9).contains(&answered), "{answered} sessions sent");
    assert_eq!(answered + refused, 1_000);
    let Some(pb::reply::Kind::Error(e)) = &replies[999].kind else {
        unreachable!()
    };
    assert!(e.message.contains("--max-batch-reply"), "{}", e.message);

    // The same over gRPC's Pipeline stream.
    let mut grpc = server.grpc_client().await;
    let mut responses = grpc
        .pipeline(tokio_stream::iter([gets(1_000)]))
        .await
        .expect("pipeline")
        .into_inner();
    let mut replies = Vec::new();
    while replies.len() < 1_000 {
        let response = responses
            .message()
            .await
            .expect("a response")
            .expect("more");
        replies.extend(response.replies);
    }
    let answered = replies.iter().filter(|r| error_code(r).is_none()).count();
    assert!(
        (7..=9).contains(&answered),
        "{answered} sessions sent over gRPC"
    );
    bystander_reads(&client, &small).await;
    let rss = server.rss_bytes();
    assert!(rss < 64 * MIB + 100 * MIB, "RSS {} MiB", rss / MIB);

    // More calls than a message may hold: refused whole, none of them run.
    drop(attackers);
    let mut conn = TcpStream::connect(server.addr()).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    conn.write_all(FRAMED_PREFACE).expect("preface");
    let mut too_many = gets(2_000);
    too_many.calls.iter_mut().for_each(|c| {
        c.kind = Some(pb::call::Kind::Invalidate(pb::InvalidateRequest {
            id: big.as_str().to_owned(),
        }))
    });
    conn.write_all(&framed_message(&too_many)).expect("request");
    let replies = read_replies(&mut conn, 1);
    assert_eq!(replies[0].tag, 0);
    assert_eq!(
        error_code(&replies[0]),
        Some(tonic::Code::ResourceExhausted)
    );
    client
        .get(&big)
        .await
        .expect("no call of the refused message ran");
}

#[tokio::test]
async fn a_read_naming_one_attribute_many_times_is_refused_or_folded() {
    let server = start(&["--threads", "1"]);
    wait_serving(&server.grpc).await;
    let big = one_mib_session(&server).await;
    let (client, small) = bystander(&server).await;
    let mut grpc = server.grpc_client().await;
    let read = move |times: usize| pb::GetRequest {
        id: big.as_str().to_owned(),
        names: vec!["big0".into(); times],
        known_version: 0,
    };

    let started = Instant::now();
    let status = grpc.get(read(60_000)).await.expect_err("too many names");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("at most 1024"),
        "{}",
        status.message()
    );
    assert!(started.elapsed() < CLIENT_TIMEOUT);

    // Within the cap, a name given many times is copied once.
    let attack = tokio::spawn({
        let mut grpc = grpc.clone();
        let read = read.clone();
        async move {
            for _ in 0..20 {
                let got = grpc.get(read(1_024)).await.expect("a read").into_inner();
                assert_eq!(got.session.expect("session").attributes.len(), 1);
            }
        }
    });
    for _ in 0..10 {
        bystander_reads(&client, &small).await;
    }
    attack.await.expect("attack");
}

#[tokio::test]
async fn list_operations_on_long_lists_are_bounded_per_batch() {
    let server = start(&[]);
    wait_serving(&server.grpc).await;
    let client = server.client(Protocol::Framed);
    let (bystander_client, small) = bystander(&server).await;
    let recent = |i: u32| pb::Operation {
        name: "recent".into(),
        kind: Some(pb::operation::Kind::RecentPush(pb::RecentPushOp {
            item: i.to_be_bytes().to_vec().into(),
            content_type: String::new(),
            keep: 10_000,
        })),
    };
    let mut grpc = server.grpc_client().await;
    let id = client.create(Ops::new()).await.expect("create").info.id;
    // A list of 10,000 items, the most a recent-push keeps.
    let items = (0..10_000u32)
        .map(|i| i.to_be_bytes().to_vec().into())
        .collect();
    let list = pb::Value {
        content_type: String::new(),
        kind: Some(pb::value::Kind::List(pb::ValueList { items })),
    };
    grpc.apply(pb::ApplyRequest {
        id: id.as_str().to_owned(),
        operations: vec![set("recent", list)],
        returning: 0,
    })
    .await
    .expect("a long list");
    // 1,024 pushes onto a 10,000-item list would look at 10 million items under the lock.
    let started = Instant::now();
    let status = grpc
        .apply(pb::ApplyRequest {
            id: id.as_str().to_owned(),
            operations: (0..1_024).map(|i| recent(20_000 + i)).collect(),
            returning: 0,
        })
        .await
        .expect_err("too much work");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("batch work limit"),
        "{}",
        status.message()
    );
    assert!(
        started.elapsed() < CLIENT_TIMEOUT,
        "refused in {:?}",
        started.elapsed()
    );
    bystander_reads(&bystander_client, &small).await;
}

#[tokio::test]
async fn applies_that_change_many_long_names_keep_the_event_ring_within_its_bytes() {
    let server = start(&["--watch-buffer-bytes", "8MiB", "--threads", "1"]);
    wait_serving(&server.grpc).await;
    let (client, small) = bystander(&server).await;
    let names: Vec<String> = (0..900).map(|i| format!("{i:01000}")).collect();
    let ops: Vec<pb::Operation> = names.iter().map(|n| set(n, bytes_value(1))).collect();
    let id = client.create(Ops::new()).await.expect("create").info.id;
    let before = server.rss_bytes();
    let mut conn = TcpStream::connect(server.addr()).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    conn.write_all(FRAMED_PREFACE).expect("preface");
    let apply = framed_message(&pb::PipelineRequest {
        calls: vec![pb::Call {
            tag: 1,
            kind: Some(pb::call::Kind::Apply(pb::ApplyRequest {
                id: id.as_str().to_owned(),
                operations: ops,
                returning: 0,
            })),
        }],
        origin: 0,
        hello: None,
    });
    // Each apply's event names 900 attributes of 1,000 bytes: about 1 MB.
    const APPLIES: usize = 3_000;
    for i in 0..APPLIES {
        conn.write_all(&apply).expect("apply");
        let replies = read_replies(&mut conn, 1);
        assert_eq!(error_code(&replies[0]), None, "apply {i}");
        if i % 500 == 0 {
            bystander_reads(&client, &small).await;
        }
    }
    let grown = server.rss_bytes().saturating_sub(before);
    // Without a bound in bytes the ring would hold about 3 GB now.
    assert!(
        grown < 8 * MIB + 64 * MIB,
        "RSS grew by {} MiB",
        grown / MIB
    );
    let metrics = server.metrics().await;
    let ring: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("session_watch_buffer_bytes "))
        .and_then(|v| v.parse().ok())
        .expect("session_watch_buffer_bytes");
    assert!(
        ring <= (8 * MIB) as f64 && ring > MIB as f64,
        "ring holds {ring} bytes"
    );
}

#[tokio::test]
async fn half_sent_prefaces_cost_nothing_and_are_closed_at_the_handshake_timeout() {
    let server = start(&["--handshake-timeout", "1s"]);
    wait_serving(&server.grpc).await;
    let (client, small) = bystander(&server).await;
    let mut http2_settings = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    http2_settings.extend([0, 0, 12, 4, 0, 0, 0, 0, 0, 0, 3]); // SETTINGS of 12 bytes, 2 sent
    let partials: [&[u8]; 3] = [&FRAMED_PREFACE[..7], b"PRI * HTTP/2", &http2_settings];
    let cpu_before = server.cpu_ticks();
    let held: Vec<TcpStream> = (0..900)
        .map(|i| {
            let mut conn = TcpStream::connect(server.addr()).expect("connect");
            conn.write_all(partials[i % 3]).expect("part of a preface");
            conn
        })
        .collect();
    let opened = Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    bystander_reads(&client, &small).await;
    for mut conn in held {
        conn.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let mut rest = Vec::new();
        assert!(
            conn.read_to_end(&mut rest).is_ok_and(|n| n == 0),
            "closed without an answer"
        );
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}"
    );
    // Waiting costs nothing: the 2 ms re-peeks of partial prefaces took most of a core.
    let cpu = server.cpu_ticks() - cpu_before;
    assert!(
        cpu < 100,
        "{cpu} ticks of 10 ms while 900 half-sent prefaces waited"
    );
    bystander_reads(&client, &small).await;
}

#[tokio::test]
async fn connections_past_the_limit_are_turned_away_while_health_still_answers() {
    let server = start(&["--max-connections", "256"]);
    wait_serving(&server.grpc).await;
    let (client, small) = bystander(&server).await; // one connection (plus its gRPC one)
    let mut held = Vec::new();
    while held.len() < 300 {
        let mut conn = TcpStream::connect(server.addr()).expect("connect");
        conn.write_all(FRAMED_PREFACE).expect("preface");
        held.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = server.metrics().await;
    assert!(metrics.contains("session_connections 256"), "{metrics}");

    // A framed client past the limit is told why.
    let mut late = TcpStream::connect(server.addr()).expect("connect");
    late.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    late.write_all(FRAMED_PREFACE).expect("preface");
    // (The reserve has room: the framed connections turned away before were closed.)
    let mut reply = Vec::new();
    late.read_to_end(&mut reply)
        .expect("an answer, then the close");
    let response = pb::PipelineResponse::decode(&reply[4..]).expect("a response");
    assert_eq!(
        error_code(&response.replies[0]),
        Some(tonic::Code::ResourceExhausted)
    );
    let Some(pb::reply::Kind::Error(e)) = &response.replies[0].kind else {
        unreachable!()
    };
    assert!(e.message.contains("--max-connections"), "{}", e.message);
    // Health answers on the session port and the admin port; the bystander's connection,
    // opened before, is still served.
    assert!(
        super::health(&server.grpc).status.success(),
        "health at the limit"
    );
    let healthz = reqwest::get(format!("{}/healthz", server.admin))
        .await
        .expect("healthz");
    assert_eq!(healthz.status(), 200);
    bystander_reads(&client, &small).await;
    let metrics = server.metrics().await;
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("session_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .expect("session_connections_refused_total");
    assert!(refused >= 36.0, "{refused} refused");

    // Once some close, new clients get in again.
    held.truncate(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = server.client(Protocol::Framed);
    fresh
        .get(&small)
        .await
        .expect("a new client once below the limit");
    drop(held);
}

#[tokio::test]
async fn idle_framed_connections_are_closed_and_long_timeouts_are_capped() {
    let server = start(&[
        "--connection-idle-timeout",
        "1s",
        "--idle-timeout-cap",
        "1h",
    ]);
    wait_serving(&server.grpc).await;
    let mut idle = TcpStream::connect(server.addr()).expect("connect");
    idle.write_all(FRAMED_PREFACE).expect("preface");
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).expect("closed"), 0);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let mut grpc = server.grpc_client().await;
    let info = grpc
        .create(pb::CreateRequest {
            idle_timeout_ms: u64::MAX,
            max_lifetime_ms: u64::MAX,
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .info
        .expect("info");
    assert_eq!(
        info.idle_timeout_ms, 3_600_000,
        "capped at --idle-timeout-cap"
    );
    assert_eq!(
        info.max_lifetime_ms,
        30 * 24 * 3_600_000,
        "capped at the default cap"
    );
}

#[tokio::test]
async fn a_request_that_does_not_decode_is_invalid_argument() {
    let server = start(&[]);
    wait_serving(&server.grpc).await;
    let channel = tonic::transport::Endpoint::from_shared(server.grpc.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    // A WatchRequest's first field is a number where a GetRequest's is text.
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/session.v1.SessionService/Get");
    let status = grpc
        .unary::<pb::WatchRequest, pb::GetResponse, _>(
            tonic::Request::new(pb::WatchRequest {
                server_epoch: 5,
                ..Default::default()
            }),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("not a GetRequest");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("malformed"),
        "{}",
        status.message()
    );
}
