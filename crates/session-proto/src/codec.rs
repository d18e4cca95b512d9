//! The gRPC codec of `session.v1`: prost's, except that a request that does not decode is the
//! caller's fault (`INVALID_ARGUMENT`), not the server's (`INTERNAL`, prost's answer for any
//! message). A reply that does not decode stays `INTERNAL`: the client did nothing wrong.

use std::marker::PhantomData;
use tonic::{
    Code, Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Which status a message that fails to decode gets: its sender's side of the blame.
pub trait Inbound {
    const DECODE_ERROR: Code;
}

macro_rules! inbound {
    ($code:ident: $($message:ident),* $(,)?) => {
        $(impl Inbound for crate::v1::$message {
            const DECODE_ERROR: Code = Code::$code;
        })*
    };
}

inbound!(InvalidArgument: CreateRequest, GetRequest, ApplyRequest, InvalidateRequest,
    RotateIdRequest, WatchRequest, PipelineRequest, BackupRequest);
inbound!(Internal: WriteResponse, GetResponse, InvalidateResponse, RotateIdResponse,
    WatchResponse, PipelineResponse, BackupResponse);

#[derive(Debug, Clone)]
pub struct SessionCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SessionCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SessionCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Inbound + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SessionDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SessionDecoder(ProstDecoder::default())
    }
}

#[derive(Debug, Clone)]
pub struct SessionDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default + Inbound> Decoder for SessionDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            Status::new(
                U::DECODE_ERROR,
                format!("malformed message: {}", status.message()),
            )
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
