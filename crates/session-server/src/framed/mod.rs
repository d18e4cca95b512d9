//! The session port: gRPC and the framed pipeline on one listener.
//!
//! gRPC costs every call a trip through HTTP/2 at both ends (stream state, flow control, frame
//! and body layers), about 13 µs of CPU per side for a 1 KB read on the benchmark machine,
//! where Redis's whole protocol costs a few. The framed pipeline carries the same
//! `PipelineRequest`/`PipelineResponse` messages as the gRPC `Pipeline` RPC, each preceded by
//! its length, on a plain TCP connection: the session client uses it for its calls and keeps
//! gRPC for the watch stream, while tools (grpcurl, health checks) keep the gRPC API. One port
//! serves both: each new connection's first bytes say which it speaks
//! ([`session_proto::FRAMED_PREFACE`], or HTTP/2's `PRI`). With TLS (`--tls-cert`), the port
//! takes TLS only, and the same first bytes, inside it, tell the two protocols apart.

mod connection;

#[cfg(test)]
pub(crate) use connection::holds_a_frame;
use connection::serve;

use crate::{
    config::ConnectionLimits,
    convert,
    handshake::Peer,
    metrics::Open,
    service::{SessionServiceImpl, refusal},
    store::SessionStore,
    tls::{self, Tls},
};
use bytes::{Buf, Bytes};
use futures_util::SinkExt;
use session_proto::{FRAMED_PREFACE, v1 as pb};
use std::sync::Arc;
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::server::TlsStream;
use tokio_util::{
    codec::{FramedWrite, LengthDelimitedCodec},
    sync::CancellationToken,
    task::TaskTracker,
};
use tonic::{Code, transport::server::Connected};

/// Connections kept beyond `--max-connections` for health checks: a server at its limit
/// still answers `grpc.health.v1` on them (and nothing else), so that an orchestrator does
/// not restart a busy server, and a framed client is told why it is turned away.
pub const HEALTH_RESERVE: usize = 8;

/// What every HTTP/2 connection starts with.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The largest first SETTINGS frame accepted during the handshake (a client sends a few
/// dozen bytes).
const MAX_FIRST_SETTINGS: usize = 16 * 1024;

/// Where a new connection goes once it has said which protocol it speaks.
#[derive(Debug)]
pub struct Routes {
    /// gRPC connections, to the full tonic server.
    pub grpc: mpsc::Sender<io::Result<Conn>>,
    /// gRPC connections taken beyond the limit, to a tonic server of the health service only.
    pub health: mpsc::Sender<io::Result<Conn>>,
}

/// How a session port serves its connections.
#[derive(Debug, Clone)]
pub struct Serving {
    pub max_message: usize,
    pub limits: ConnectionLimits,
    /// TLS, when the port takes TLS only.
    pub tls: Option<Arc<Tls>>,
}

/// Accepts connections on `listener` until `stop`: framed ones are served here, gRPC ones
/// are handed to tonic, and past `serving.limits.max_connections` they are turned away. Every
/// connection task is spawned on `tracker`, so that shutdown can wait for them.
pub async fn accept<S: SessionStore>(
    listener: TcpListener,
    service: SessionServiceImpl<S>,
    serving: Serving,
    routes: Routes,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let metrics = service.metrics_handle();
    let limits = serving.limits;
    // Whether the limit was reached and said so: one line per episode, not per connection.
    let mut at_limit = false;
    while let Some(stream) = crate::server::next_connection(&listener, &stop, "session").await {
        let open = metrics.connections_open();
        let health_only = open >= limits.max_connections;
        if health_only && !at_limit {
            tracing::warn!(
                limit = limits.max_connections,
                "connection limit reached (--max-connections): new connections are turned away until some close"
            );
        }
        at_limit = health_only;
        if open >= limits.max_connections + HEALTH_RESERVE {
            metrics.connection_refused();
            continue; // dropped: closed at once
        }
        let connection = Connection {
            slot: metrics.connection(),
            health_only,
            service: service.clone(),
            serving: serving.clone(),
            grpc: routes.grpc.clone(),
            health: routes.health.clone(),
        };
        let stop = stop.clone();
        tracker.spawn(async move {
            // No Nagle delay: a reply's bytes must leave at once, not wait for an ACK.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let timeout = connection.serving.limits.handshake_timeout;
            let opened = tokio::select! {
                _ = stop.cancelled() => return,
                opened = tokio::time::timeout(timeout, connection.open(stream)) => opened,
            };
            match opened {
                Ok(Some(opened)) => connection.serve(opened).await,
                Ok(None) => {}
                Err(_) => tracing::debug!(
                    ?timeout,
                    "connection closed: no whole handshake within the handshake timeout"
                ),
            }
        });
    }
}

/// A connection accepted on the session port, on its way to the protocol it speaks.
struct Connection<S> {
    /// Counts it as open until it closes.
    slot: Open,
    /// Taken beyond the limit: health checks only.
    health_only: bool,
    service: SessionServiceImpl<S>,
    serving: Serving,
    grpc: mpsc::Sender<io::Result<Conn>>,
    health: mpsc::Sender<io::Result<Conn>>,
}

/// A connection past its TLS handshake and preface.
struct Opened {
    io: Io,
    peer: Peer,
    preface: Preface,
}

impl<S: SessionStore> Connection<S> {
    /// The TLS handshake, if the port takes TLS, then the preface; `None` when the connection
    /// is closed (said why at debug level).
    async fn open(&self, mut stream: TcpStream) -> Option<Opened> {
        let Some(tls) = &self.serving.tls else {
            let preface = self.preface(&mut stream).await?;
            return Some(Opened {
                io: Io::Plain(stream),
                peer: Peer::default(),
                preface,
            });
        };
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(1) if first[0] == tls::HANDSHAKE_RECORD => {}
            Ok(1) => {
                // A plaintext client: a framed one is told what to change.
                if let Some(Preface::Framed) = self.preface(&mut stream).await {
                    let error = convert::refused(
                        Code::FailedPrecondition,
                        "this session server takes TLS connections only: give the client an https:// address and the server's CA".into(),
                    );
                    turn_away(FramedWrite::new(stream, codec(usize::MAX)), error).await;
                }
                return None;
            }
            _ => return None,
        }
        let mut stream = match tls.acceptor().accept(stream).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "connection closed: TLS handshake failed");
                return None;
            }
        };
        let peer = Peer {
            certificate: tls::client_name(stream.get_ref().1),
        };
        let preface = self.preface(&mut stream).await?;
        Some(Opened {
            io: Io::Tls(Box::new(stream)),
            peer,
            preface,
        })
    }

    /// The connection's preface, `None` if it is none.
    async fn preface<T: AsyncRead + Unpin>(&self, stream: &mut T) -> Option<Preface> {
        match read_preface(stream).await {
            Ok(Preface::Unknown) => {
                tracing::debug!(
                    "connection closed: it speaks neither gRPC nor the framed pipeline"
                );
                None
            }
            Ok(preface) => Some(preface),
            Err(e) => {
                tracing::debug!(error = %e, "connection failed in its handshake");
                None
            }
        }
    }

    async fn serve(self, opened: Opened) {
        let Opened { io, peer, preface } = opened;
        let (service, limits) = (self.service, self.serving.limits);
        match preface {
            Preface::Framed if self.health_only => {
                service.metrics().connection_refused();
                let error = convert::refused(
                    Code::ResourceExhausted,
                    format!(
                        "the session server has its limit of {} connections open (--max-connections); try again later",
                        limits.max_connections
                    ),
                );
                match io {
                    Io::Plain(s) => turn_away(FramedWrite::new(s, codec(usize::MAX)), error).await,
                    Io::Tls(s) => turn_away(FramedWrite::new(s, codec(usize::MAX)), error).await,
                }
            }
            Preface::Framed => {
                let max = self.serving.max_message;
                let idle = limits.idle_timeout;
                match io {
                    Io::Plain(stream) => {
                        let (read, write) = stream.into_split();
                        serve(read, write, peer, service, max, idle).await;
                    }
                    Io::Tls(stream) => {
                        let (read, write) = tokio::io::split(stream);
                        serve(read, write, peer, service, max, idle).await;
                    }
                }
            }
            Preface::Http2(read) => {
                let conn = Conn {
                    read,
                    io,
                    peer,
                    _slot: self.slot,
                };
                let to = if self.health_only {
                    self.health
                } else {
                    self.grpc
                };
                let _ = to.send(Ok(conn)).await;
            }
            Preface::Unknown => {}
        }
    }
}

#[derive(Debug)]
enum Preface {
    /// The framed preface, consumed: what follows are frames.
    Framed,
    /// HTTP/2's preface and first SETTINGS frame: the bytes read, for tonic to read again.
    Http2(Bytes),
    Unknown,
}

/// Reads a whole preface, and never a byte past it: what follows belongs to the protocol.
/// A peer that sends part of one and stops waits in `read`, which costs nothing until its
/// handshake timeout ends it.
async fn read_preface<T: AsyncRead + Unpin>(stream: &mut T) -> io::Result<Preface> {
    // Either preface is at least this long, so reading this much never reads past one.
    const COMMON: usize = FRAMED_PREFACE.len();
    let mut buf = vec![0; HTTP2_PREFACE.len() + 9];
    let mut n = read_some(stream, &mut buf[..COMMON]).await?;
    let expected = if buf[0] == FRAMED_PREFACE[0] {
        FRAMED_PREFACE
    } else {
        HTTP2_PREFACE
    };
    while n < expected.len() {
        if buf[..n] != expected[..n] {
            return Ok(Preface::Unknown);
        }
        let want = if n < COMMON { COMMON } else { expected.len() };
        n += read_some(stream, &mut buf[n..want]).await?;
    }
    if buf[..n] != *expected {
        return Ok(Preface::Unknown);
    }
    if expected == FRAMED_PREFACE {
        return Ok(Preface::Framed);
    }
    // HTTP/2: the client's first frame must be SETTINGS; a peer that stops half-way through
    // it is held up here, under the handshake timeout, instead of inside tonic without one.
    while n < buf.len() {
        n += read_some(stream, &mut buf[n..]).await?;
    }
    let header = &buf[HTTP2_PREFACE.len()..];
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    const SETTINGS: u8 = 4;
    if header[3] != SETTINGS || length > MAX_FIRST_SETTINGS {
        return Ok(Preface::Unknown);
    }
    buf.resize(n + length, 0);
    while n < buf.len() {
        n += read_some(stream, &mut buf[n..]).await?;
    }
    Ok(Preface::Http2(buf.into()))
}

async fn read_some<T: AsyncRead + Unpin>(stream: &mut T, buf: &mut [u8]) -> io::Result<usize> {
    match stream.read(buf).await? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        n => Ok(n),
    }
}

/// Answers a framed client's first message with `error` (as a reply of tag 0) and closes.
async fn turn_away<T: AsyncWrite + Unpin>(
    mut replies: FramedWrite<T, LengthDelimitedCodec>,
    error: pb::CallError,
) {
    if session_proto::put_frame(replies.write_buffer_mut(), &refusal(error)) {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            SinkExt::<Bytes>::flush(&mut replies),
        )
        .await;
    }
}

/// A connection's transport: plain TCP, or TLS over it.
#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A gRPC connection as tonic gets it: the bytes read to tell its protocol come first.
/// Counted as open until tonic drops it.
#[derive(Debug)]
pub struct Conn {
    read: Bytes,
    io: Io,
    peer: Peer,
    _slot: Open,
}

/// Each request on the connection carries what TLS learnt of its client.
impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// Calls `f` with the connection's stream, whichever transport it is.
macro_rules! on_io {
    ($self:ident, $stream:ident => $call:expr) => {
        match &mut $self.io {
            Io::Plain($stream) => $call,
            Io::Tls($stream) => $call,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.has_remaining() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        on_io!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_io!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_io!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_io!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_io!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Frames of at most `max` bytes, each after its length as 4 bytes, big-endian.
pub fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max)
        .new_codec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, config::ServerConfig};
    use prost::Message;
    use tokio::io::AsyncWriteExt;

    /// Reads until the server closes the connection, and returns what came.
    async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
            .await
            .expect("the server closes the connection within 5 s")
            .expect("read");
        got
    }

    /// The session port of `engine` on a loopback port, served until the test ends.
    async fn serving(engine: &Engine) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (grpc, _unused) = mpsc::channel(1);
        let (health, _unused_too) = mpsc::channel(1);
        let serving = Serving {
            max_message: 1 << 20,
            limits: ConnectionLimits::default(),
            tls: None,
        };
        tokio::spawn(accept(
            listener,
            engine.service(),
            serving,
            Routes { grpc, health },
            TaskTracker::new(),
            CancellationToken::new(),
        ));
        addr
    }

    /// Sends one call of tag `tag` (its preface sent already) and returns the reply's tag.
    async fn call(conn: &mut TcpStream, tag: u64) -> u64 {
        let call = pb::Call {
            tag,
            kind: Some(pb::call::Kind::Get(pb::GetRequest {
                id: "no such session".into(),
                ..Default::default()
            })),
        };
        let mut request = bytes::BytesMut::new();
        let batch = pb::PipelineRequest {
            calls: vec![call],
            origin: 1,
            hello: None,
        };
        assert!(session_proto::put_frame(&mut request, &batch));
        conn.write_all(&request).await.expect("send");
        let mut length = [0; 4];
        conn.read_exact(&mut length).await.expect("a reply");
        let mut reply = vec![0; u32::from_be_bytes(length) as usize];
        conn.read_exact(&mut reply).await.expect("the whole reply");
        let reply = pb::PipelineResponse::decode(&reply[..]).expect("a PipelineResponse");
        reply.replies[0].tag
    }

    #[tokio::test]
    async fn shutdown_closes_framed_connections_busy_or_idle() {
        let engine = Engine::new(&ServerConfig::default());
        let addr = serving(&engine).await;

        // One connection has been answered once and then waits; one has sent only its preface.
        let mut answered = TcpStream::connect(addr).await.expect("connect");
        answered.write_all(FRAMED_PREFACE).await.expect("send");
        assert_eq!(call(&mut answered, 7).await, 7);
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        silent.write_all(FRAMED_PREFACE).await.expect("send");
        tokio::time::sleep(Duration::from_millis(100)).await;

        engine.closing.cancel();
        assert!(read_to_close(&mut answered).await.is_empty());
        assert!(read_to_close(&mut silent).await.is_empty());
    }

    #[tokio::test]
    async fn a_preface_split_into_single_bytes_is_still_understood() {
        let engine = Engine::new(&ServerConfig::default());
        let mut conn = TcpStream::connect(serving(&engine).await)
            .await
            .expect("connect");
        for byte in FRAMED_PREFACE {
            conn.write_all(&[*byte]).await.expect("a byte");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(call(&mut conn, 3).await, 3);
    }

    #[test]
    fn a_frame_is_whole_once_its_length_and_all_its_bytes_are_there() {
        assert!(holds_a_frame(&[0, 0, 0, 2, 7, 7]));
        assert!(
            holds_a_frame(&[0, 0, 0, 2, 7, 7, 0, 0]),
            "and the next one started"
        );
        assert!(holds_a_frame(&[0, 0, 0, 0]), "an empty message");
        assert!(!holds_a_frame(&[0, 0, 0, 3, 7, 7]));
        assert!(!holds_a_frame(&[1, 0, 0, 0, 7]), "16 MiB announced");
        assert!(!holds_a_frame(&[0, 0, 0]));
        assert!(!holds_a_frame(&[]));
    }
}
