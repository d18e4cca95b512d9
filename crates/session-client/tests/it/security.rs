//! Credentials, apps and TLS through the real server: who may call, on which protocol, and
//! what each app sees of the others.

use crate::common::{self, PROTOCOLS, TestServer};
use futures_util::StreamExt;
use prost::Message;
use session_client::{
    ClientConfig, Cursor, Error, Ops, Protocol, SessionClient, TlsOptions, Token, watch::Update,
};
use session_proto::{FRAMED_PREFACE, v1 as pb};
use session_server::{
    config::ServerConfig,
    probe,
    testing::{DevCerts, with_credentials},
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const CART: &str = "cart-token-0123456789abcdefghijklmnopqrstuvw";
const SHOP: &str = "shop-token-0123456789abcdefghijklmnopqrstuvw";
const ADMIN: &str = "admin-token-0123456789abcdefghijklmnopqrstuv";

fn credentials(extra: &str) -> String {
    format!(
        "app:cart token:{CART}\napp:shop token:{SHOP}\nadmin token:{ADMIN}\napp:shop cert:shop-1\n{extra}"
    )
}

async fn secured(extra: &str) -> TestServer {
    common::spawn(with_credentials(
        ServerConfig::default(),
        &credentials(extra),
    ))
    .await
}

fn client_of(
    url: &str,
    token: Option<&str>,
    app: Option<&str>,
    protocol: Protocol,
) -> SessionClient {
    SessionClient::connect_lazy(ClientConfig {
        endpoints: vec![url.to_owned()],
        timeout: Duration::from_secs(2),
        protocol,
        token: token.map(Token::new),
        app: app.map(str::to_owned),
        ..ClientConfig::default()
    })
    .expect("valid configuration")
}

/// A plain gRPC client, as a tool with the published .proto would make, with no metadata.
async fn tool(
    url: &str,
) -> pb::session_service_client::SessionServiceClient<tonic::transport::Channel> {
    pb::session_service_client::SessionServiceClient::connect(url.to_owned())
        .await
        .expect("connect")
}

fn id_request(id: &str) -> pb::GetRequest {
    pb::GetRequest {
        id: id.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_session_call_needs_a_credential_on_both_protocols_and_health_does_not() {
    let server = secured("").await;
    for protocol in PROTOCOLS {
        let anonymous = client_of(&server.url, None, None, protocol);
        let refused = anonymous
            .create(Ops::new())
            .await
            .expect_err("no credential");
        assert!(
            matches!(&refused, Error::Unauthenticated(m) if m.contains("requires a credential")),
            "{protocol}: {refused}"
        );
        let wrong = client_of(
            &server.url,
            Some("not-a-token-this-server-knows-at-all"),
            None,
            protocol,
        );
        let refused = wrong.get("anything").await.expect_err("a wrong token");
        assert!(
            matches!(refused, Error::Unauthenticated(_)),
            "{protocol}: {refused}"
        );
        let cart = client_of(&server.url, Some(CART), None, protocol);
        let id = cart
            .create(Ops::new())
            .await
            .expect("the cart's token")
            .info
            .id;
        cart.get(&id).await.expect("read back");
        assert_eq!(cart.server_hello().expect("a handshake").app, "cart");
    }

    // A tool that sends no metadata: every RPC, unary and streaming, is refused.
    let mut raw = tool(&server.url).await;
    let codes = [
        raw.create(pb::CreateRequest::default()).await.map(drop),
        raw.get(id_request("x")).await.map(drop),
        raw.apply(pb::ApplyRequest::default()).await.map(drop),
        raw.invalidate(pb::InvalidateRequest::default())
            .await
            .map(drop),
        raw.rotate_id(pb::RotateIdRequest::default())
            .await
            .map(drop),
        raw.watch(pb::WatchRequest::default()).await.map(drop),
        raw.pipeline(futures_util::stream::empty::<pb::PipelineRequest>())
            .await
            .map(drop),
    ]
    .map(|r| r.expect_err("refused").code());
    assert_eq!(codes, [Code::Unauthenticated; 7]);

    // Health needs nothing, on the session port and the admin port.
    probe::check(&server.url, None, Duration::from_secs(2))
        .await
        .expect("SERVING without a token");
    let healthz = reqwest::get(format!("{}/healthz", server.admin_url))
        .await
        .expect("admin port");
    assert!(healthz.status().is_success());
    assert!(server.metrics().await.contains("session_active"));
    server.stop().await;
}

#[tokio::test]
async fn another_apps_session_is_not_found_and_a_wrong_role_is_denied() {
    let server = secured("").await;
    let cart = client_of(&server.url, Some(CART), None, Protocol::Framed);
    let shop = client_of(&server.url, Some(SHOP), None, Protocol::Framed);
    let id = cart
        .create(Ops::new().set_json("secret", &1).expect("json"))
        .await
        .expect("create")
        .info
        .id;

    assert_eq!(
        shop.get(&id).await.expect_err("another app's"),
        Error::NotFound
    );
    assert_eq!(
        shop.apply(&id, Ops::new().counter_add("n", 1))
            .await
            .expect_err("another app's"),
        Error::NotFound
    );
    assert_eq!(
        shop.rotate_id(&id).await.expect_err("another app's"),
        Error::NotFound
    );
    assert_eq!(
        shop.invalidate(&id).await.expect_err("another app's"),
        Error::NotFound
    );
    let unknown = "x".repeat(43);
    assert_eq!(
        shop.get(&unknown).await.expect_err("unknown"),
        Error::NotFound,
        "exactly as an id that does not exist"
    );
    let session = cart.get(&id).await.expect("still the cart's, unchanged");
    assert_eq!(session.info.version, 1);

    let admin = client_of(&server.url, Some(ADMIN), None, Protocol::Framed);
    assert!(matches!(
        admin
            .get(&id)
            .await
            .expect_err("an admin token is no app's"),
        Error::PermissionDenied(_)
    ));
    let posing = client_of(&server.url, Some(CART), Some("shop"), Protocol::Grpc);
    assert!(matches!(
        posing.get(&id).await.expect_err("the cart's token names the cart"),
        Error::PermissionDenied(m) if m.contains("\"cart\"")
    ));

    // Each app's watchers hear of their own app's sessions only.
    let mut shop_events = shop.subscribe();
    assert_eq!(common::next_update(&mut shop_events).await, Update::Reset);
    let mut cart_events = cart.subscribe();
    assert_eq!(common::next_update(&mut cart_events).await, Update::Reset);
    cart.apply(&id, Ops::new().counter_add("n", 1))
        .await
        .expect("apply");
    let shops = shop
        .create(Ops::new())
        .await
        .expect("create")
        .info
        .reference;
    match common::next_update(&mut shop_events).await {
        Update::Event(e) => assert_eq!(e.reference, shops, "the shop's own, not the cart's"),
        other => panic!("expected the shop's event, got {other:?}"),
    }
    assert!(
        matches!(common::next_update(&mut cart_events).await, Update::Event(e) if e.version == 2)
    );
    server.stop().await;
}

#[tokio::test]
async fn tls_with_the_right_ca_works_on_both_protocols_and_the_wrong_one_is_refused_clearly() {
    let certs = DevCerts::new(&["shop-1"]);
    let config = with_credentials(ServerConfig::default(), &credentials(""));
    let server = common::spawn_tls(config, &certs).await;
    assert!(server.url.starts_with("https://"));
    let trusting = |options: TlsOptions, token: Option<&str>, protocol| {
        SessionClient::connect_lazy(ClientConfig {
            endpoints: vec![server.url.clone()],
            timeout: Duration::from_secs(2),
            protocol,
            token: token.map(Token::new),
            tls: options,
            ..ClientConfig::default()
        })
        .expect("valid configuration")
    };
    let ca = || TlsOptions::from_files(Some(&certs.ca()), None).expect("CA file");
    for protocol in PROTOCOLS {
        let cart = trusting(ca(), Some(CART), protocol);
        let id = cart.create(Ops::new()).await.expect("over TLS").info.id;
        cart.get(&id).await.expect("over TLS");
        let mut updates = cart.subscribe();
        assert_eq!(
            common::next_update(&mut updates).await,
            Update::Reset,
            "{protocol}: the watch too"
        );
    }

    let strangers = DevCerts::new(&[]);
    let wrong = TlsOptions::from_files(Some(&strangers.ca()), None).expect("CA file");
    let refused = trusting(wrong, Some(CART), Protocol::Framed)
        .create(Ops::new())
        .await
        .expect_err("a CA that did not sign the server's certificate");
    let message = refused.to_string();
    assert!(
        refused.is_unavailable() && message.contains("certificate") && message.contains("CA"),
        "{message}"
    );

    let plaintext = format!("http://{}", server.addr);
    let refused = client_of(&plaintext, Some(CART), None, Protocol::Framed)
        .create(Ops::new())
        .await
        .expect_err("plaintext to a TLS port");
    assert!(
        refused.to_string().contains("TLS connections only"),
        "{refused}"
    );

    // Mutual TLS: the certificate is the credential.
    let (cert, key) = certs.client("shop-1");
    let identity = TlsOptions::from_files(Some(&certs.ca()), Some((&cert, &key))).expect("files");
    let shop = trusting(identity, None, Protocol::Framed);
    shop.create(Ops::new())
        .await
        .expect("the certificate's app");
    assert_eq!(shop.server_hello().expect("a handshake").app, "shop");
    server.stop().await;
}

/// What a client of protocol 1 sends: the preface, then a request without a hello.
async fn framed_v1_call(addr: std::net::SocketAddr) -> pb::PipelineResponse {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = pb::PipelineRequest {
        calls: vec![pb::Call {
            tag: 1,
            kind: Some(pb::call::Kind::Create(pb::CreateRequest::default())),
        }],
        origin: 0,
        hello: None,
    };
    let mut bytes = bytes::BytesMut::from(FRAMED_PREFACE);
    session_proto::put_frame(&mut bytes, &request);
    conn.write_all(&bytes).await.expect("send");
    let length = conn.read_u32().await.expect("an answer") as usize;
    let mut reply = vec![0; length];
    conn.read_exact(&mut reply).await.expect("the answer");
    pb::PipelineResponse::decode(&reply[..]).expect("a response")
}

#[tokio::test]
async fn a_client_of_protocol_1_still_calls_a_server_without_credentials_and_is_told_why_otherwise()
{
    let open = common::spawn(ServerConfig::default()).await;
    let answered = framed_v1_call(open.addr).await;
    assert!(
        matches!(answered.replies[0].kind, Some(pb::reply::Kind::Write(_))),
        "framed calls without a hello work: {answered:?}"
    );
    let mut raw = tool(&open.url).await;
    let created = raw
        .create(pb::CreateRequest::default())
        .await
        .expect("a unary call");
    raw.get(id_request(&created.into_inner().info.expect("info").id))
        .await
        .expect("read back");
    let old_watch = raw
        .watch(pb::WatchRequest::default())
        .await
        .expect_err("protocol 1");
    assert_eq!(old_watch.code(), Code::FailedPrecondition);
    assert!(
        old_watch.message().contains("upgrade"),
        "{}",
        old_watch.message()
    );
    open.stop().await;

    let secured = secured("").await;
    let refused = framed_v1_call(secured.addr).await;
    match &refused.replies[..] {
        [
            pb::Reply {
                tag: 0,
                kind: Some(pb::reply::Kind::Error(e)),
            },
        ] => {
            assert_eq!(Code::from_i32(e.code), Code::Unauthenticated);
            assert!(e.message.contains("requires a credential"), "{}", e.message);
        }
        other => panic!("expected a refusal of the whole message, got {other:?}"),
    }
    secured.stop().await;
}

#[tokio::test]
async fn a_kind_this_server_does_not_know_is_unimplemented_and_named() {
    let server = common::spawn(ServerConfig::default()).await;
    let mut raw = tool(&server.url).await;
    let request = pb::CreateRequest {
        operations: vec![pb::Operation {
            name: "basket".into(),
            kind: None, // what a newer client's operation decodes as here
        }],
        ..Default::default()
    };
    let status = raw.create(request).await.expect_err("unknown kind");
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("\"basket\"") && status.message().contains("counter_add"));
    server.stop().await;
}

#[tokio::test]
async fn an_app_over_its_rate_is_refused_while_another_is_served() {
    let server = secured("quota:shop rate=20").await;
    let shop = client_of(&server.url, Some(SHOP), None, Protocol::Framed);
    let cart = client_of(&server.url, Some(CART), None, Protocol::Framed);
    let (mut admitted, mut limited) = (0, 0);
    for _ in 0..60 {
        match shop.get("x").await {
            Err(Error::NotFound) => admitted += 1,
            Err(Error::LimitExceeded(m)) if m.contains("rate") => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        admitted >= 20 && limited > 0,
        "admitted {admitted}, limited {limited}"
    );
    for _ in 0..60 {
        assert_eq!(
            cart.get("x").await.expect_err("unknown"),
            Error::NotFound,
            "no limit of its own"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn an_app_at_its_quota_evicts_its_own_sessions_and_never_anothers() {
    let server = secured("quota:shop sessions=5").await;
    let shop = client_of(&server.url, Some(SHOP), None, Protocol::Framed);
    let cart = client_of(&server.url, Some(CART), None, Protocol::Framed);
    let mut carts = Vec::new();
    for _ in 0..3 {
        carts.push(cart.create(Ops::new()).await.expect("create").info.id);
    }
    let mut shops = Vec::new();
    for _ in 0..20 {
        shops.push(shop.create(Ops::new()).await.expect("create").info.id);
    }
    for id in &carts {
        cart.get(id).await.expect("the cart's sessions stay");
    }
    assert_eq!(
        shop.get(&shops[0]).await.expect_err("evicted"),
        Error::NotFound
    );
    shop.get(&shops[19]).await.expect("the newest stays");
    assert_eq!(server.metric("session_app_active{app=\"shop\"}").await, 5.0);
    assert_eq!(server.metric("session_app_active{app=\"cart\"}").await, 3.0);
    server.stop().await;
}

#[tokio::test]
async fn the_raw_watch_names_sessions_by_reference_only() {
    let server = secured("").await;
    let cart = client_of(&server.url, Some(CART), None, Protocol::Framed);
    let mut stream = cart.watch_raw(&Cursor::default()).await.expect("watch");
    let _hello = stream.next().await;
    let created = cart.create(Ops::new()).await.expect("create").info;
    let rotated = cart.rotate_id(&created.id).await.expect("rotate");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let Some(Ok(session_client::WatchItem::Event(e))) = stream.next().await {
            seen.push(e);
        }
    }
    assert_eq!(seen[0].reference, created.reference);
    assert_eq!(
        (seen[1].reference, seen[1].new_reference),
        (created.reference, Some(rotated.reference))
    );
    server.stop().await;
}
