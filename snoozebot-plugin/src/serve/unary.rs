//! The provider's methods answered straight from a request's bytes: prost in, prost out.
//!
//! Every `snoozebot.plugin.v1.CloudProvider` method is unary. tonic's server runs each call
//! through its codec machinery — a decoding stream over a boxed body, an encoding stream
//! producing the answer's body, a metadata map per message — which cost about a quarter of the
//! plugin's instructions per call (callgrind). Here the connection reads the request's one
//! message ([`grpc::read_message`]), this module decodes it, calls the same
//! [`cloud_provider_server::CloudProvider`] implementation tonic would, and encodes the answer
//! with its gRPC prefix in one buffer. Other services (health, controller, broker, stdio) go
//! through tonic's routes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tonic::{Request, Response, Status};

use super::ProviderService;
use crate::proto::v1::cloud_provider_server::CloudProvider as _;
use crate::wire::grpc;

/// An answer: the encoded message with its 5-byte gRPC prefix, or the call's status.
pub(super) type UnaryCall = Pin<Box<dyn Future<Output = Result<Bytes, Status>> + Send>>;

/// The gRPC path of every method this module answers starts with this.
const SERVICE_PATH: &str = "/snoozebot.plugin.v1.CloudProvider/";

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
    Box::pin(async move { grpc::encode(&answered.await?.into_inner()) })
}
