//! gRPC's message framing, both sides: a message behind its 5-byte prefix (a compression flag
//! and a big-endian length), written in one buffer and read from an h2 stream whole.

use bytes::{Buf, Bytes, BytesMut};
use tonic::Status;

use crate::MAX_MESSAGE_SIZE;

/// The gRPC message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// `message` with its gRPC prefix, in one buffer.
pub(crate) fn encode(message: &impl prost::Message) -> Result<Bytes, Status> {
    let length = message.encoded_len();
    let prefixed_length = u32::try_from(length)
        .ok()
        .filter(|_| length <= MAX_MESSAGE_SIZE)
        .ok_or_else(|| {
            Status::resource_exhausted(format!(
                "the answer is {length} bytes, over the limit of {MAX_MESSAGE_SIZE}"
            ))
        })?;
    let mut buffer = Vec::with_capacity(PREFIX + length);
    buffer.push(0);
    buffer.extend_from_slice(&prefixed_length.to_be_bytes());
    message.encode_raw(&mut buffer);
    Ok(buffer.into())
}

/// Reads the DATA of `body` (a request's, or an answer's before its trailers), which must be
/// exactly one uncompressed gRPC message of at most [`MAX_MESSAGE_SIZE`] bytes; the message
/// without its prefix.
pub(crate) async fn read_message(body: &mut h2::RecvStream) -> Result<Bytes, Status> {
    unframe(read_data(body).await?)
}

/// Reads the DATA of `body`, at most a message's prefix and [`MAX_MESSAGE_SIZE`] bytes, handing
/// each frame's bytes back to the peer's window. A body in one DATA frame (the usual case) is
/// not copied.
pub(crate) async fn read_data(body: &mut h2::RecvStream) -> Result<Bytes, Status> {
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(data) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
        let data = data.map_err(|error| Status::from_error(Box::new(error)))?;
        let _ = body.flow_control().release_capacity(data.len());
        let read = first.as_ref().map_or(0, Bytes::len) + joined.len() + data.len();
        if read > PREFIX + MAX_MESSAGE_SIZE {
            return Err(Status::resource_exhausted(format!(
                "the message is over the limit of {MAX_MESSAGE_SIZE} bytes"
            )));
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    joined.extend_from_slice(&earlier);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// The one uncompressed message `body` must hold, without its prefix.
pub(crate) fn unframe(mut body: Bytes) -> Result<Bytes, Status> {
    if body.len() < PREFIX {
        return Err(Status::internal("Missing message."));
    }
    let compressed = body.get_u8();
    let length = body.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::unimplemented(
            "compressed messages are not supported (no grpc-encoding is offered)",
        ));
    }
    if length != body.len() {
        return Err(Status::internal(format!(
            "the body holds {} bytes after a message of {length}: one message expected",
            body.len()
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1 as pb;
    use prost::Message as _;

    #[test]
    fn a_framed_message_unframes_to_itself_and_anything_else_is_refused() {
        let framed = encode(&pb::GetInstanceRequest { id: "i-1".into() }).unwrap();
        let message = unframe(framed.clone()).unwrap();
        assert_eq!(pb::GetInstanceRequest::decode(message).unwrap().id, "i-1");
        let mut compressed = framed.to_vec();
        compressed[0] = 1;
        assert_eq!(
            unframe(compressed.into()).unwrap_err().code(),
            tonic::Code::Unimplemented
        );
        for broken in [
            &framed[..4],
            &framed[..framed.len() - 1],
            &[framed.as_ref(), b"x"].concat()[..],
        ] {
            assert_eq!(
                unframe(Bytes::copy_from_slice(broken)).unwrap_err().code(),
                tonic::Code::Internal,
                "{broken:?}"
            );
        }
    }

    #[test]
    fn an_answer_is_its_message_behind_a_five_byte_prefix() {
        let message = pb::GetInstanceRequest {
            id: "i-0123".into(),
        };
        let encoded = encode(&message).unwrap();
        assert_eq!(encoded[0], 0);
        assert_eq!(
            u32::from_be_bytes(encoded[1..5].try_into().unwrap()) as usize,
            message.encoded_len()
        );
        assert_eq!(
            pb::GetInstanceRequest::decode(&encoded[5..]).unwrap(),
            message
        );
    }
}
