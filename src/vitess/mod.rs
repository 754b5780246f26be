//! Everything vtmove knows about Vitess at the wire level: protobuf types, the topology store and
//! its locks, the TabletManager client with its stream and health model, and the pure routing
//! math of a MoveTables workflow.

pub mod proto;
pub mod routing;
pub mod srv_vschema;
pub mod tablet;
pub mod topo;
pub mod vschema_json;

/// What a gRPC call that never reached its server failed on, when `status` says so: tonic turns
/// a failed connection (refused, TLS handshake rejected, closed) into `Unknown: transport error`
/// or `Cancelled`, with the transport error, which names the cause, only as its source.
pub(crate) fn transport_failure(status: &tonic::Status) -> Option<String> {
    let cause = std::error::Error::source(status)?;
    if !cause.is::<tonic::transport::Error>() {
        return None;
    }
    let chain = error_chain(cause);
    Some(if chain.contains(status.message()) {
        chain
    } else {
        format!("{}: {chain}", status.message())
    })
}

/// `error` and its causes, `: `-separated (a transport error alone says only "transport error").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
