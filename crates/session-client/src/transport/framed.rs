//! The framed connection: the pipeline's messages, length-prefixed, on a plain TCP (or TLS)
//! connection to the session port (see `session_proto::FRAMED_PREFACE`), without HTTP/2's
//! per-message work. A connection opens with the handshake: the preface and this client's
//! hello, then the server's reply, before any call.

use super::handshake::{self, Handshake, Heard};
use crate::error::Error;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, Stream, StreamExt, stream::BoxStream};
use prost::Message;
use session_proto::v1 as pb;
use std::{sync::Arc, task::Poll, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream, rustls::pki_types::ServerName};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tonic::Code;

/// The largest handshake reply read: a few dozen bytes in truth.
const MAX_HELLO_REPLY: usize = 64 * 1024;

/// Where framed connections go, and how they open.
#[derive(Debug)]
pub(crate) struct Target {
    /// `host:port`.
    pub(crate) addr: String,
    pub(crate) tls: Option<Tls>,
    pub(crate) handshake: Handshake,
    /// Where the server's answer to each handshake is kept.
    pub(crate) heard: Arc<Heard>,
}

/// TLS to the server: the connector (trusted CAs, a client certificate) and the name its
/// certificate must have.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) connector: TlsConnector,
    pub(crate) name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

/// A framed connection past its handshake.
pub(super) enum Connection {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection to `target` that has sent the preface and its hello and had the server's
/// answer: refused, it fails with the server's reason.
pub(super) async fn connect(target: &Target, timeout: Duration) -> Result<Connection, Error> {
    let addr = &target.addr;
    let unreachable = |e: std::io::Error| Error::Unavailable(format!("{addr}: {e}"));
    let tcp = TcpStream::connect(addr).await.map_err(unreachable)?;
    configure(&tcp, timeout).map_err(unreachable)?;
    let mut connection = match &target.tls {
        None => Connection::Plain(tcp),
        Some(tls) => {
            let stream = tls
                .connector
                .connect(tls.name.clone(), tcp)
                .await
                .map_err(|e| tls_failed(addr, &e))?;
            Connection::Tls(Box::new(stream))
        }
    };
    let mut first = BytesMut::from(session_proto::FRAMED_PREFACE);
    session_proto::put_frame(&mut first, &target.handshake.first_message());
    let answer = match &mut connection {
        Connection::Plain(s) => exchange(s, &first).await,
        Connection::Tls(s) => exchange(s.as_mut(), &first).await,
    }
    .map_err(|e| Error::Unavailable(format!("{addr}: handshake: {e}")))?;
    let (hello, durable) = handshake::answer(answer)?;
    target.heard.hello(hello);
    target.heard.durable(durable);
    Ok(connection)
}

/// No Nagle delay, and a server that vanishes without closing (a cut network) is noticed:
/// idle connections by keepalive probes, busy ones by unacknowledged data, each within a few
/// timeouts. (Keepalive counts whole seconds, at least one.)
fn configure(stream: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let probe_every = timeout.max(Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(probe_every)
        .with_interval(probe_every);
    let socket = socket2::SockRef::from(stream);
    #[cfg(target_os = "linux")]
    let keepalive = {
        socket.set_tcp_user_timeout(Some(timeout * 3))?;
        keepalive.with_retries(2)
    };
    socket.set_tcp_keepalive(&keepalive)
}

/// Sends `first` and reads the one message that answers it.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    first: &[u8],
) -> std::io::Result<pb::PipelineResponse> {
    stream.write_all(first).await?;
    stream.flush().await?;
    let length = stream.read_u32().await? as usize;
    if length > MAX_HELLO_REPLY {
        return Err(std::io::Error::other(format!(
            "an answer of {length} bytes is no handshake reply"
        )));
    }
    let mut reply = vec![0; length];
    stream.read_exact(&mut reply).await?;
    pb::PipelineResponse::decode(&reply[..]).map_err(std::io::Error::other)
}

/// A TLS handshake's failure, with what usually causes it.
fn tls_failed(addr: &str, e: &std::io::Error) -> Error {
    let certificate = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                tokio_rustls::rustls::Error::InvalidCertificate(_)
                    | tokio_rustls::rustls::Error::NoCertificatesPresented
            )
        });
    let hint = if certificate {
        "the server's certificate is not one this client trusts: is the CA given to the client (the CA file) the one that signed it, and is it for this host name?"
    } else {
        "does the server take TLS (--tls-cert)? An http:// address talks plaintext"
    };
    Error::Unavailable(format!("TLS with {addr} failed: {e} ({hint})"))
}

/// A framed stream on `connection`: a task on `runtime` writes what `outbox` gives (every call
/// waiting as one message, flushed when the outbox runs dry); the replies are read by the
/// caller of this.
pub(super) fn stream<O>(
    connection: Connection,
    outbox: O,
    runtime: &tokio::runtime::Handle,
) -> BoxStream<'static, Result<pb::PipelineResponse, Error>>
where
    O: Stream<Item = pb::PipelineRequest> + Unpin + Send + 'static,
{
    match connection {
        Connection::Plain(stream) => {
            let (read, write) = stream.into_split();
            halves(read, write, outbox, runtime)
        }
        Connection::Tls(stream) => {
            let (read, write) = tokio::io::split(*stream);
            halves(read, write, outbox, runtime)
        }
    }
}

fn halves<R, W, O>(
    read: R,
    write: W,
    outbox: O,
    runtime: &tokio::runtime::Handle,
) -> BoxStream<'static, Result<pb::PipelineResponse, Error>>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    O: Stream<Item = pb::PipelineRequest> + Unpin + Send + 'static,
{
    // No limit of its own either way (the codec's default is 8 MiB): the server bounds what it
    // takes and what it sends, and a large session travels alone.
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(usize::MAX)
        .new_codec();
    runtime.spawn(write_calls(outbox, FramedWrite::new(write, codec.clone())));
    FramedRead::new(read, codec)
        .map(|frame| {
            let frame = frame.map_err(|e| Error::Unavailable(e.to_string()))?;
            pb::PipelineResponse::decode(frame.freeze()).map_err(|e| Error::Server {
                code: Code::Internal,
                message: format!("the server sent a bad message: {e}"),
            })
        })
        .boxed()
}

/// Writes what the outbox gives, encoded straight into the connection's buffer, and flushes
/// when it runs dry; ends, closing its half of the connection, when the outbox does.
async fn write_calls<O, W>(mut outbox: O, mut out: FramedWrite<W, LengthDelimitedCodec>)
where
    O: Stream<Item = pb::PipelineRequest> + Unpin,
    W: AsyncWrite + Unpin,
{
    while let Some(batch) = outbox.next().await {
        let mut framed = session_proto::put_frame(out.write_buffer_mut(), &batch);
        // More calls waited than one message holds: the rest go in this write too.
        let mut ended = false;
        while framed && !ended {
            match std::future::poll_fn(|cx| Poll::Ready(outbox.poll_next_unpin(cx))).await {
                Poll::Ready(Some(batch)) => {
                    framed = session_proto::put_frame(out.write_buffer_mut(), &batch);
                }
                Poll::Ready(None) => ended = true,
                Poll::Pending => break,
            }
        }
        // A message too large to frame ends the connection: the reader then fails the calls
        // it carried, as for any broken connection.
        if !framed || SinkExt::<Bytes>::flush(&mut out).await.is_err() || ended {
            break;
        }
    }
    let _ = SinkExt::<Bytes>::close(&mut out).await;
}
