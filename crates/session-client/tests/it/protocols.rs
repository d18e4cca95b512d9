//! One port, two protocols: framed clients, gRPC clients and plain gRPC calls (as grpcurl makes
//! them) share a server and its sessions, and a framed connection that sends nonsense is
//! told why and closed without disturbing anyone else.

use crate::common;

use prost::Message;
use session_client::{Ops, Protocol, Value};
use session_proto::{FRAMED_PREFACE, v1 as pb};
use session_server::{config::ServerConfig, store::Limits};
use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn framed_and_grpc_clients_share_the_port_and_the_sessions() {
    let server = common::spawn(ServerConfig::default()).await;
    let framed = server.client_with(TIMEOUT, Protocol::Framed);
    let grpc = server.client_with(TIMEOUT, Protocol::Grpc);

    let id = framed
        .create(Ops::new().counter_add("n", 1))
        .await
        .expect("create over the framed protocol")
        .info
        .id;
    grpc.apply(&id, Ops::new().counter_add("n", 10))
        .await
        .expect("apply over gRPC");
    framed
        .apply(&id, Ops::new().counter_add("n", 100))
        .await
        .expect("apply over the framed protocol");
    let seen = grpc.get(&id).await.expect("get over gRPC");
    assert_eq!(seen.counter("n").expect("a counter"), 111);
    let again = framed.get(&id).await.expect("get over framed");
    assert_eq!(
        (again.info.version, &again.attributes),
        (seen.info.version, &seen.attributes),
        "both protocols read the same session"
    );

    // A unary call, as a gRPC tool makes it.
    let mut tool = pb::session_service_client::SessionServiceClient::connect(server.url.clone())
        .await
        .expect("a gRPC connection");
    let got = tool
        .get(pb::GetRequest {
            id: id.as_str().to_owned(),
            ..Default::default()
        })
        .await
        .expect("unary get")
        .into_inner();
    assert_eq!(got.session.and_then(|s| s.info).map(|i| i.version), Some(3));
    server.stop().await;
}

#[tokio::test]
async fn nonsense_on_a_framed_connection_is_answered_and_closes_it_and_nothing_else() {
    let server = common::spawn(ServerConfig::default()).await;
    let client = server.client();
    let id = client.create(Ops::new()).await.expect("create").info.id;

    let not_a_message = [&[0, 0, 0, 3][..], &[0xff; 3]].concat();
    let too_long = [0xff; 4]; // announces a 4 GiB message: refused before any allocation
    for (what, bytes, code) in [
        (
            "not a message",
            &not_a_message[..],
            tonic::Code::InvalidArgument,
        ),
        ("too long", &too_long, tonic::Code::ResourceExhausted),
    ] {
        let mut conn = TcpStream::connect(server.addr).await.expect("connect");
        conn.write_all(FRAMED_PREFACE).await.expect("preface");
        conn.write_all(bytes).await.expect("nonsense");
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{what}: the server closes the connection promptly"))
            .expect("read to the close");
        // One response, a reply of tag 0 (no call's) saying what was wrong, then the close.
        let (length, message) = got.split_at(4);
        assert_eq!(
            u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize,
            message.len()
        );
        let response = pb::PipelineResponse::decode(message).expect("a PipelineResponse");
        let [reply] = &response.replies[..] else {
            panic!("{what}: one reply, got {response:?}")
        };
        assert_eq!(reply.tag, 0);
        let Some(pb::reply::Kind::Error(error)) = &reply.kind else {
            panic!("{what}: an error reply, got {reply:?}")
        };
        assert_eq!(error.code, code as i32, "{what}: {}", error.message);
        client
            .get(&id)
            .await
            .unwrap_or_else(|e| panic!("{what}: other connections still served: {e}"));
    }

    // A connection that stops partway through the preface holds up no new connection.
    let mut stalled = TcpStream::connect(server.addr).await.expect("connect");
    stalled
        .write_all(&FRAMED_PREFACE[..5])
        .await
        .expect("part of the preface");
    for protocol in common::PROTOCOLS {
        let fresh = server.client_with(TIMEOUT, protocol);
        fresh
            .get(&id)
            .await
            .unwrap_or_else(|e| panic!("{protocol}: a new client is served: {e}"));
    }
    drop(stalled);
    server.stop().await;
}

#[tokio::test]
async fn a_session_larger_than_8_mib_travels_both_ways_on_either_protocol() {
    // Past the framing codec's default limit, on a server configured to allow it.
    let limits = Limits {
        max_session_bytes: 16 << 20,
        max_attribute_bytes: 12 << 20,
        capacity_bytes: 64 << 20,
        ..Limits::default()
    };
    let server = common::spawn(ServerConfig {
        limits,
        ..ServerConfig::default()
    })
    .await;
    let big = bytes::Bytes::from(vec![7u8; 9 << 20]);
    for protocol in common::PROTOCOLS {
        let client = server.client_with(Duration::from_secs(10), protocol);
        let id = client
            .create(Ops::new().set_bytes("big", "application/octet-stream", big.clone(), None))
            .await
            .unwrap_or_else(|e| panic!("{protocol}: create with 9 MiB: {e}"))
            .info
            .id;
        let got = client
            .get(&id)
            .await
            .unwrap_or_else(|e| panic!("{protocol}: get 9 MiB back: {e}"));
        match got.attribute("big").map(|a| &a.value) {
            Some(Value::Bytes { data, .. }) => assert!(data == &big, "{protocol}: same bytes"),
            other => panic!("{protocol}: got {other:?}"),
        }
    }
    server.stop().await;
}

/// A client closes a stream it has not used for a while (at most a minute, here 60 timeouts
/// of 50 ms) before the server's idle timeout would, and opens a new one for its next call.
#[tokio::test]
async fn an_idle_client_closes_its_stream_and_calls_again_on_a_new_one() {
    let server = common::spawn(ServerConfig::default()).await;
    let open_framed = || async {
        let metrics = reqwest::get(format!("{}/metrics", server.admin_url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("session_framed_connections "))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("session_framed_connections")
    };
    let client = server.client_with(Duration::from_millis(50), Protocol::Framed);
    let id = client.create(Ops::new()).await.expect("create").info.id;
    assert_eq!(open_framed().await, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_framed().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle stream stays open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.get(&id).await.expect("a call on a new stream");
    assert_eq!(open_framed().await, 1);
    server.stop().await;
}
