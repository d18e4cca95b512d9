//! The framed connection: the pipeline's messages, length-prefixed, on a plain TCP
//! connection to the session port (see `session_proto::FRAMED_PREFACE`), without HTTP/2's
//! per-message work.

use crate::error::Error;
use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt, stream::BoxStream};
use prost::Message;
use session_proto::v1 as pb;
use std::{task::Poll, time::Duration};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpStream, tcp::OwnedWriteHalf},
};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tonic::Code;

/// A TCP connection to `addr` that has sent the framed preface.
pub(super) async fn connect(addr: String, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    // No Nagle delay: a call's bytes must leave at once.
    stream.set_nodelay(true)?;
    // A server that vanishes without closing (a cut network) is noticed: idle connections
    // by keepalive probes, busy ones by unacknowledged data, each within a few timeouts.
    // (Keepalive counts whole seconds, at least one.)
    let probe_every = timeout.max(Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(probe_every)
        .with_interval(probe_every);
    let socket = socket2::SockRef::from(&stream);
    #[cfg(target_os = "linux")]
    let keepalive = {
        socket.set_tcp_user_timeout(Some(timeout * 3))?;
        keepalive.with_retries(2)
    };
    socket.set_tcp_keepalive(&keepalive)?;
    stream.write_all(session_proto::FRAMED_PREFACE).await?;
    Ok(stream)
}

/// A framed stream on `stream`: a task on `runtime` writes what `outbox` gives (every call
/// waiting as one message, flushed when the outbox runs dry); the replies are read by the
/// caller of this.
pub(super) fn stream<O>(
    stream: TcpStream,
    outbox: O,
    runtime: &tokio::runtime::Handle,
) -> BoxStream<'static, Result<pb::PipelineResponse, Error>>
where
    O: Stream<Item = pb::PipelineRequest> + Unpin + Send + 'static,
{
    let (read, write) = stream.into_split();
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
async fn write_calls<O>(mut outbox: O, mut out: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>)
where
    O: Stream<Item = pb::PipelineRequest> + Unpin,
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
