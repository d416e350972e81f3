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
    /// A `match` on the method's name: each arm decodes, runs the service's method, encodes.
    macro_rules! methods {
        ($name:expr; $($method:literal => $function:ident),* $(,)?) => {
            match $name {
                $($method => {
                    let service = Arc::clone(service);
                    answer(message, move |r| async move { service.$function(r).await })
                })*
                other => Box::pin(std::future::ready(Err(Status::unimplemented(format!(
                    "no method {other:?} in snoozebot.plugin.v1.CloudProvider"
                ))))),
            }
        };
    }
    methods!(path.strip_prefix(SERVICE_PATH).unwrap_or_default();
        "Info" => info,
        "GetInstance" => get_instance,
        "ListInstances" => list_instances,
        "ListInstancesPage" => list_instances_page,
        "StopInstance" => stop_instance,
        "StartInstance" => start_instance,
        "StopInstances" => stop_instances,
        "StartInstances" => start_instances,
        "WaitForOperation" => wait_for_operation,
    )
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
