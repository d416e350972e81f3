//! The provider's methods answered straight from a request's bytes: prost in, prost out.
//!
//! Every `snoozebot.plugin.v1.CloudProvider` method is unary. tonic's server runs each call
//! through its codec machinery — a decoding stream over a boxed body, an encoding stream
//! producing the answer's body, a metadata map per message — which cost about a quarter of the
//! plugin's instructions per call (callgrind). Here the connection reads the request's one
//! message ([`read_message`]), this module decodes it, calls the same
//! [`cloud_provider_server::CloudProvider`] implementation tonic would, and encodes the answer
//! with its gRPC prefix in one buffer. Other services (health, controller, broker, stdio) go
//! through tonic's routes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tonic::{Request, Response, Status};

use super::ProviderService;
use crate::MAX_MESSAGE_SIZE;
use crate::proto::v1::cloud_provider_server::CloudProvider as _;

/// An answer: the encoded message with its 5-byte gRPC prefix, or the call's status.
pub(super) type UnaryCall = Pin<Box<dyn Future<Output = Result<Bytes, Status>> + Send>>;

/// The gRPC path of every method this module answers starts with this.
const SERVICE_PATH: &str = "/snoozebot.plugin.v1.CloudProvider/";

/// The gRPC message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// Whether `path` names a method of the provider's service.
pub(super) fn serves(path: &str) -> bool {
    path.starts_with(SERVICE_PATH)
}

/// Runs the method `path` names on `message` (the request's one message, prefix removed).
pub(super) fn call(service: &Arc<ProviderService>, path: &str, message: Bytes) -> UnaryCall {
    let service = Arc::clone(service);
    let method = path.strip_prefix(SERVICE_PATH).unwrap_or_default();
    match method {
        "Info" => answer(message, move |r| async move { service.info(r).await }),
        "GetInstance" => answer(
            message,
            move |r| async move { service.get_instance(r).await },
        ),
        "ListInstances" => answer(
            message,
            move |r| async move { service.list_instances(r).await },
        ),
        "ListInstancesPage" => answer(message, move |r| async move {
            service.list_instances_page(r).await
        }),
        "StopInstance" => answer(
            message,
            move |r| async move { service.stop_instance(r).await },
        ),
        "StartInstance" => answer(
            message,
            move |r| async move { service.start_instance(r).await },
        ),
        "StopInstances" => answer(
            message,
            move |r| async move { service.stop_instances(r).await },
        ),
        "StartInstances" => answer(
            message,
            move |r| async move { service.start_instances(r).await },
        ),
        "WaitForOperation" => answer(message, move |r| async move {
            service.wait_for_operation(r).await
        }),
        _ => Box::pin(std::future::ready(Err(Status::unimplemented(format!(
            "no method {method:?} in snoozebot.plugin.v1.CloudProvider"
        ))))),
    }
}

/// Decodes `message` as the method's request, runs `method`, encodes its answer.
fn answer<Req, Resp, Fut>(message: Bytes, method: impl FnOnce(Request<Req>) -> Fut) -> UnaryCall
where
    Req: prost::Message + Default,
    Resp: prost::Message,
    Fut: Future<Output = Result<Response<Resp>, Status>> + Send + 'static,
{
    let request = match Req::decode(message) {
        Ok(request) => request,
        // What tonic answers to a message that does not decode.
        Err(error) => {
            return Box::pin(std::future::ready(Err(Status::internal(error.to_string()))));
        }
    };
    let answered = method(Request::new(request));
    Box::pin(async move { encode(&answered.await?.into_inner()) })
}

/// `message` with its gRPC prefix, in one buffer.
fn encode(message: &impl prost::Message) -> Result<Bytes, Status> {
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

/// Reads a request's body, which must be exactly one uncompressed gRPC message of at most
/// [`MAX_MESSAGE_SIZE`] bytes; the message without its prefix. A body in one DATA frame (the
/// usual case) is not copied.
pub(super) async fn read_message(mut body: h2::RecvStream) -> Result<Bytes, Status> {
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(data) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
        let data =
            data.map_err(|error| Status::cancelled(format!("the request broke off: {error}")))?;
        let _ = body.flow_control().release_capacity(data.len());
        let read = first.as_ref().map_or(0, Bytes::len) + joined.len() + data.len();
        if read > PREFIX + MAX_MESSAGE_SIZE {
            return Err(Status::resource_exhausted(format!(
                "the request is over the limit of {MAX_MESSAGE_SIZE} bytes"
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
    let mut body = first.unwrap_or_else(|| joined.freeze());
    if body.len() < PREFIX {
        return Err(Status::internal("Missing request message."));
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
            "the request holds {} bytes after a message of {length}: one message expected",
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
