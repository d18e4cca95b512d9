//! The session port: gRPC and the framed pipeline on one listener.
//!
//! gRPC costs every call a trip through HTTP/2 at both ends (stream state, flow control, frame
//! and body layers), about 13 µs of CPU per side for a 1 KB read on the benchmark machine,
//! where Redis's whole protocol costs a few. The framed pipeline carries the same
//! `PipelineRequest`/`PipelineResponse` messages as the gRPC `Pipeline` RPC, each preceded by
//! its length, on a plain TCP connection: the session client uses it for its calls and keeps
//! gRPC for the watch stream, while tools (grpcurl, health checks) keep the gRPC API. One port
//! serves both: each new connection's first bytes say which it speaks
//! ([`session_proto::FRAMED_PREFACE`], or HTTP/2's `PRI`).

use crate::{service::SessionServiceImpl, store::SessionStore};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prost::Message;
use session_proto::{FRAMED_PREFACE, v1 as pb};
use std::{io, task::Poll, time::Duration};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_util::{
    codec::{FramedRead, FramedWrite, LengthDelimitedCodec},
    sync::CancellationToken,
};

/// Replies held back for requests already buffered are written once they reach this size.
const WRITE_AT: usize = 256 * 1024;

/// How long a new connection may take to send its first bytes.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until `stop`: framed ones are served here, the others
/// (gRPC) are handed to `grpc`.
pub async fn accept<S: SessionStore>(
    listener: TcpListener,
    service: SessionServiceImpl<S>,
    max_message: usize,
    grpc: mpsc::Sender<io::Result<TcpStream>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // No Nagle delay: a reply's bytes must leave at once, not wait for an ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let (service, grpc) = (service.clone(), grpc.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(FIRST_BYTES_TIMEOUT, speaks_framed(&stream)).await {
                Ok(Ok(true)) => serve(stream, service, max_message).await,
                Ok(Ok(false)) => {
                    let _ = grpc.send(Ok(stream)).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "connection failed before its first bytes")
                }
                Err(_) => tracing::debug!("connection sent nothing within {FIRST_BYTES_TIMEOUT:?}"),
            }
        });
    }
}

/// Whether the connection starts with the framed preface, looking without consuming (a gRPC
/// connection goes on to HTTP/2 untouched).
async fn speaks_framed(stream: &TcpStream) -> io::Result<bool> {
    let mut first = [0; FRAMED_PREFACE.len()];
    loop {
        let n = stream.peek(&mut first).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if first[..n] != FRAMED_PREFACE[..n] {
            return Ok(false);
        }
        if n == FRAMED_PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far (it was split in transit, which is rare): look again
        // shortly. Waiting for readiness would not do, as the bytes peeked keep it set.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Serves one framed connection: each request message answered in order, until the client
/// closes, sends something that is not a message, or the server shuts down.
async fn serve<S: SessionStore>(
    mut stream: TcpStream,
    service: SessionServiceImpl<S>,
    max_message: usize,
) {
    let mut preface = [0; FRAMED_PREFACE.len()];
    if stream.read_exact(&mut preface).await.is_err() {
        return;
    }
    let _open = service.metrics().framed_connection();
    let (read, write) = stream.into_split();
    let mut requests = FramedRead::new(read, codec(max_message));
    let mut replies = FramedWrite::new(write, codec(usize::MAX));
    // Shutdown wakes this task through a waiter registered once, here; from then on a look at
    // the token each time round will do. Polling the waiter every time took the token's lock
    // twice per message, about 3% of the server's work for a lone caller.
    let closing = service.closing();
    let waiter = closing.clone().cancelled_owned();
    tokio::pin!(waiter);
    if futures_util::poll!(&mut waiter).is_ready() {
        return;
    }
    loop {
        let frame = std::future::poll_fn(|cx| {
            if closing.is_cancelled() {
                return Poll::Ready(None); // ends the connection as the client closing would
            }
            requests.poll_next_unpin(cx)
        })
        .await;
        let batch = match frame.map(|f| f.map(|bytes| pb::PipelineRequest::decode(bytes.freeze())))
        {
            None => break,
            Some(Ok(Ok(batch))) => batch,
            Some(Ok(Err(e))) => {
                tracing::warn!(error = %e, "framed connection closed: a message is not a PipelineRequest");
                break;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "framed connection closed");
                break;
            }
        };
        let answered = service.answer_batch(batch).await;
        if !session_proto::put_frame(replies.write_buffer_mut(), &answered) {
            tracing::warn!("framed connection closed: a reply of 4 GiB or more cannot be framed");
            break;
        }
        // Replies to requests that arrived together leave together: one write, not one each
        // (up to a bound, so that a client that sends without reading cannot grow the buffer).
        if holds_a_frame(requests.read_buffer()) && replies.write_buffer().len() < WRITE_AT {
            continue;
        }
        if let Err(e) = SinkExt::<Bytes>::flush(&mut replies).await {
            tracing::debug!(error = %e, "framed connection closed while answering");
            return;
        }
    }
    // Replies held back for a request that was then not answered still go out.
    let _ = SinkExt::<Bytes>::flush(&mut replies).await;
}

/// Whether `buffered` starts with a whole frame (its length, then that many bytes).
fn holds_a_frame(buffered: &[u8]) -> bool {
    match buffered.first_chunk::<4>() {
        Some(length) => buffered.len() - 4 >= u32::from_be_bytes(*length) as usize,
        None => false,
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

    #[tokio::test]
    async fn shutdown_closes_framed_connections_busy_or_idle() {
        let engine = Engine::new(&ServerConfig::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (grpc, _unused) = mpsc::channel(1);
        let stop = CancellationToken::new();
        tokio::spawn(accept(
            listener,
            engine.service(),
            1 << 20,
            grpc,
            stop.clone(),
        ));

        // One connection has been answered once and then waits; one has sent only its preface.
        let mut answered = TcpStream::connect(addr).await.expect("connect");
        let mut request = bytes::BytesMut::from(FRAMED_PREFACE);
        let get = pb::GetRequest {
            id: "no such session".into(),
            ..Default::default()
        };
        let call = pb::Call {
            tag: 7,
            kind: Some(pb::call::Kind::Get(get)),
        };
        let batch = pb::PipelineRequest {
            calls: vec![call],
            origin: 1,
        };
        assert!(session_proto::put_frame(&mut request, &batch));
        answered.write_all(&request).await.expect("send");
        let mut length = [0; 4];
        answered.read_exact(&mut length).await.expect("a reply");
        let mut reply = vec![0; u32::from_be_bytes(length) as usize];
        answered
            .read_exact(&mut reply)
            .await
            .expect("the whole reply");
        let reply = pb::PipelineResponse::decode(&reply[..]).expect("a PipelineResponse");
        assert_eq!(reply.replies[0].tag, 7);
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        silent.write_all(FRAMED_PREFACE).await.expect("send");
        tokio::time::sleep(Duration::from_millis(100)).await;

        engine.closing.cancel();
        assert!(read_to_close(&mut answered).await.is_empty());
        assert!(read_to_close(&mut silent).await.is_empty());
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
