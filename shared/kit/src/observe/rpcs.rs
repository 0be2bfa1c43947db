//! What the RPC metrics call a request (docs/operations.md, "Observability"): its
//! `grpc_service`, `grpc_method` and `grpc_type`, looked up by path among the methods the
//! servers can serve — the Economy descriptor set, health and reflection (v1, v1alpha) —
//! so that arbitrary paths cannot grow the label set: any other path is `unknown`.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message as _;

/// The labels of one method.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Rpc {
    /// `economy.ledger.v1.LedgerService`.
    pub service: String,
    /// `AdjustBalance`.
    pub method: String,
    /// `unary`, `client_stream`, `server_stream` or `bidi_stream`.
    pub kind: &'static str,
}

/// The method at `path` (`/<service>/<method>`), or the `unknown` one.
pub(super) fn rpc(path: &str) -> &'static Rpc {
    static UNKNOWN: OnceLock<Rpc> = OnceLock::new();
    methods().get(path).unwrap_or_else(|| {
        UNKNOWN.get_or_init(|| Rpc { service: "unknown".into(), method: "unknown".into(), kind: "unary" })
    })
}

/// Every known method by path, built once.
fn methods() -> &'static HashMap<String, Rpc> {
    static METHODS: OnceLock<HashMap<String, Rpc>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let sets = [
            economy_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        sets.iter().flat_map(|set| methods_of(set)).collect()
    })
}

/// The methods of an encoded `FileDescriptorSet` (none when it does not decode).
fn methods_of(encoded: &[u8]) -> Vec<(String, Rpc)> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else { return Vec::new() };
    let mut methods = Vec::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            let service_name =
                if package.is_empty() { service.name().to_owned() } else { format!("{package}.{}", service.name()) };
            for method in &service.method {
                let kind = kind(method.client_streaming(), method.server_streaming());
                let rpc = Rpc { service: service_name.clone(), method: method.name().to_owned(), kind };
                methods.push((format!("/{service_name}/{}", method.name()), rpc));
            }
        }
    }
    methods
}

/// The `grpc_type` of a method streaming on the client's and the server's side.
fn kind(client_streaming: bool, server_streaming: bool) -> &'static str {
    match (client_streaming, server_streaming) {
        (false, false) => "unary",
        (true, false) => "client_stream",
        (false, true) => "server_stream",
        (true, true) => "bidi_stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_descriptor_sets() {
        let adjust = rpc("/economy.ledger.v1.LedgerService/AdjustBalance");
        assert_eq!(
            (adjust.service.as_str(), adjust.method.as_str(), adjust.kind),
            ("economy.ledger.v1.LedgerService", "AdjustBalance", "unary")
        );
        assert_eq!(rpc("/grpc.health.v1.Health/Check").kind, "unary");
        assert_eq!(rpc("/grpc.health.v1.Health/Watch").kind, "server_stream");
        assert_eq!(rpc("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").kind, "bidi_stream");
        assert_eq!(rpc("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo").kind, "bidi_stream");
    }

    #[test]
    fn other_paths_are_unknown() {
        for path in ["/economy.ledger.v1.LedgerService/Nope", "/x.Y/Z", "", "/"] {
            let unknown = rpc(path);
            assert_eq!(
                (unknown.service.as_str(), unknown.method.as_str(), unknown.kind),
                ("unknown", "unknown", "unary")
            );
        }
    }

    #[test]
    fn the_streaming_sides_name_the_type() {
        assert_eq!(kind(true, false), "client_stream");
        assert_eq!(kind(true, true), "bidi_stream");
    }
}
