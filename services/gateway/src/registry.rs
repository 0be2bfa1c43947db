//! The method table, built from the encoded descriptor set: every RPC of every routed
//! service with its policy (`economy.options.v1.method`, `idempotency_level`), and the
//! start-up check that every write declares a unique canonical operation
//! (docs/gateway.md, "Canonical operations") and every server stream is a read
//! (docs/gateway.md, "Streams").

use std::collections::{BTreeMap, HashMap};

use prost_reflect::{DescriptorPool, MethodDescriptor, ServiceDescriptor};

use crate::policy::FieldPolicies;

/// `MethodOptions.IdempotencyLevel.NO_SIDE_EFFECTS`.
const NO_SIDE_EFFECTS: i32 = 1;
const METHOD_EXTENSION: &str = "economy.options.v1.method";

/// Policy of one routed RPC.
#[derive(Debug, Clone)]
pub struct Method {
    /// gRPC path, `/economy.ledger.v1.LedgerService/AdjustBalance`.
    pub path: String,
    /// Name of the upstream serving it: the second package segment (`ledger`).
    pub upstream: String,
    /// `idempotency_level = NO_SIDE_EFFECTS`.
    pub read_only: bool,
    /// A server-streaming RPC (one request, a stream of responses): proxied as a stream
    /// (docs/gateway.md, "Streams").
    pub server_streaming: bool,
    /// `MODULE_ACTION_OBJECT` name; `None` for reads (and for unmapped writes, which
    /// the start-up check refuses).
    pub canonical_operation: Option<String>,
    /// Minimum caller role level.
    pub min_role_level: i32,
    /// The RPC's descriptor (request / response message types).
    pub descriptor: MethodDescriptor,
}

/// Every routed RPC, by path.
#[derive(Debug, Clone)]
pub struct Registry {
    methods: HashMap<String, Method>,
    policies: FieldPolicies,
    pool: DescriptorPool,
}

/// The start-up check failed: every offending method, one line each.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("methods the gateway cannot route safely:\n  {}", .0.join("\n  "))]
pub struct UnmappedMethods(pub Vec<String>);

/// Services routed by the gateway: `economy.<upstream>.v<N>.*`, except the gateway's own
/// and the options package.
pub fn is_routed(service: &ServiceDescriptor) -> bool {
    upstream_of(service).is_some_and(|upstream| upstream != "gateway" && upstream != "options")
}

fn upstream_of(service: &ServiceDescriptor) -> Option<&str> {
    let mut segments = service.package_name().split('.');
    match (segments.next(), segments.next()) {
        (Some("economy"), Some(upstream)) => Some(upstream),
        _ => None,
    }
}

/// True for `^[A-Z]+(_[A-Z]+)+$`.
pub fn is_canonical_operation(name: &str) -> bool {
    let parts: Vec<&str> = name.split('_').collect();
    parts.len() >= 2 && parts.iter().all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_uppercase()))
}

impl Registry {
    /// Every message and service of the descriptor set (the Connect protocol's JSON).
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Reads every routed RPC of `descriptor_set` (an encoded `FileDescriptorSet`).
    pub fn load(descriptor_set: &[u8]) -> anyhow::Result<Self> {
        let pool = DescriptorPool::decode(descriptor_set)?;
        let method_extension = pool.get_extension_by_name(METHOD_EXTENSION);
        let mut methods = HashMap::new();
        for service in pool.services().filter(is_routed) {
            let upstream = upstream_of(&service).unwrap_or_default().to_owned();
            // Client and bidirectional streams are not proxied: left unrouted, they answer
            // UNIMPLEMENTED (docs/gateway.md, "Routing").
            for descriptor in service.methods().filter(|method| !method.is_client_streaming()) {
                let options = descriptor.options();
                let read_only = options
                    .get_field_by_name("idempotency_level")
                    .is_some_and(|level| level.as_enum_number() == Some(NO_SIDE_EFFECTS));
                let policy = method_extension
                    .as_ref()
                    .filter(|extension| options.has_extension(extension))
                    .and_then(|extension| options.get_extension(extension).as_message().cloned());
                let text = |name: &str| {
                    policy
                        .as_ref()
                        .and_then(|policy| policy.get_field_by_name(name))
                        .and_then(|value| value.as_str().map(str::to_owned))
                };
                let min_role_level = policy
                    .as_ref()
                    .and_then(|policy| policy.get_field_by_name("min_role_level"))
                    .and_then(|value| value.as_i32())
                    .unwrap_or(0);
                let path = format!("/{}/{}", service.full_name(), descriptor.name());
                let canonical_operation = text("canonical_operation").filter(|name| !name.is_empty());
                methods.insert(
                    path.clone(),
                    Method {
                        path,
                        upstream: upstream.clone(),
                        read_only,
                        server_streaming: descriptor.is_server_streaming(),
                        canonical_operation,
                        min_role_level,
                        descriptor,
                    },
                );
            }
        }
        Ok(Self { methods, policies: FieldPolicies::load(&pool), pool })
    }

    /// Every write must carry a canonical operation of the form `MODULE_ACTION_OBJECT`,
    /// unique across the API, and every server stream must be a read (`NO_SIDE_EFFECTS`:
    /// a stream cannot be replayed from an idempotency record). Lists every offending
    /// method.
    pub fn check(&self) -> Result<(), UnmappedMethods> {
        let mut problems = Vec::new();
        let mut owners: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut paths: Vec<&Method> = self.methods.values().collect();
        paths.sort_by(|left, right| left.path.cmp(&right.path));
        for method in paths.iter().filter(|method| method.server_streaming && !method.read_only) {
            problems.push(format!(
                "{}: server-streaming method without idempotency_level = NO_SIDE_EFFECTS (a stream cannot be made idempotent)",
                method.path
            ));
        }
        for method in paths.iter().filter(|method| !method.read_only && !method.server_streaming) {
            match method.canonical_operation.as_deref() {
                None => problems.push(format!("{}: write method without canonical_operation", method.path)),
                Some(name) if !is_canonical_operation(name) => {
                    problems.push(format!("{}: canonical_operation {name:?} is not MODULE_ACTION_OBJECT", method.path));
                }
                Some(name) => owners.entry(name).or_default().push(&method.path),
            }
        }
        for (name, paths) in owners.into_iter().filter(|(_, paths)| paths.len() > 1) {
            problems.push(format!("canonical_operation {name} is declared by {}", paths.join(", ")));
        }
        if problems.is_empty() { Ok(()) } else { Err(UnmappedMethods(problems)) }
    }

    /// The RPC at `path`.
    pub fn method(&self, path: &str) -> Option<&Method> {
        self.methods.get(path)
    }

    /// Every routed RPC.
    pub fn methods(&self) -> impl Iterator<Item = &Method> {
        self.methods.values()
    }

    /// Names of the upstreams the routed services live on.
    pub fn upstreams(&self) -> Vec<String> {
        let mut names: Vec<String> = self.methods.values().map(|method| method.upstream.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Full names of the routed services of `upstream`.
    pub fn services_of(&self, upstream: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .methods
            .values()
            .filter(|method| method.upstream == upstream)
            .map(|method| method.descriptor.parent_service().full_name().to_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The field policies of every message type.
    pub fn policies(&self) -> &FieldPolicies {
        &self.policies
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::compile;

    #[test]
    fn the_real_api_is_fully_mapped() {
        let registry = Registry::load(economy_proto::FILE_DESCRIPTOR_SET).expect("registry");
        assert_eq!(registry.check(), Ok(()));
        let adjust = registry.method("/economy.ledger.v1.LedgerService/AdjustBalance").expect("routed");
        assert_eq!(
            (adjust.canonical_operation.as_deref(), adjust.min_role_level, adjust.read_only),
            (Some("LEDGER_ADJUST_BALANCE"), 100, false)
        );
        let balance = registry.method("/economy.ledger.v1.LedgerService/GetBalance").expect("routed");
        assert!(balance.read_only && balance.canonical_operation.is_none());
        assert_eq!(registry.upstreams(), ["items", "ledger", "market", "redemption"]);
        // The compensation tools (issue 6): admin-only writes, each with its own operation,
        // and an admin-only audit read per service.
        for (path, operation) in [
            ("/economy.ledger.v1.LedgerService/RecalculateBalance", "LEDGER_RECALCULATE_BALANCE"),
            ("/economy.ledger.v1.LedgerService/ForceReleaseHold", "LEDGER_FORCE_RELEASE_HOLD"),
            ("/economy.items.v1.ItemService/ForceUnlockItem", "ITEMS_FORCE_UNLOCK_ITEM"),
            ("/economy.redemption.v1.RedemptionService/RedriveOutbox", "REDEMPTION_REDRIVE_OUTBOX"),
            ("/economy.redemption.v1.RedemptionService/ReissueCodeOnBehalf", "REDEMPTION_REISSUE_CODE_ON_BEHALF"),
            ("/economy.market.v1.MarketService/RedriveOutbox", "MARKET_REDRIVE_OUTBOX"),
        ] {
            let tool = registry.method(path).expect("routed");
            assert_eq!(
                (tool.canonical_operation.as_deref(), tool.min_role_level, tool.read_only),
                (Some(operation), 100, false)
            );
        }
        for service in [
            "ledger.v1.LedgerService",
            "items.v1.ItemService",
            "redemption.v1.RedemptionService",
            "market.v1.MarketService",
        ] {
            let audit = registry.method(&format!("/economy.{service}/ListAuditRecords")).expect("routed");
            assert!(audit.read_only && audit.min_role_level == 100, "{service}");
        }
    }

    #[test]
    fn unmapped_writes_are_refused_and_listed() {
        let descriptor_set = compile(
            r#"syntax = "proto3";
            package economy.shop.v1;
            import "economy/options/v1/options.proto";
            message Empty {}
            service ShopService {
              rpc Browse(Empty) returns (Empty) { option idempotency_level = NO_SIDE_EFFECTS; }
              rpc Buy(Empty) returns (Empty);
              rpc Sell(Empty) returns (Empty) { option (economy.options.v1.method) = {canonical_operation: "sell"}; }
              rpc Gift(Empty) returns (Empty) { option (economy.options.v1.method) = {canonical_operation: "SHOP_GIVE_ITEM"}; }
              rpc Give(Empty) returns (Empty) { option (economy.options.v1.method) = {canonical_operation: "SHOP_GIVE_ITEM"}; }
            }"#,
        );
        let registry = Registry::load(&descriptor_set).expect("registry");
        let UnmappedMethods(problems) = registry.check().expect_err("refused");
        assert_eq!(
            problems,
            [
                "/economy.shop.v1.ShopService/Buy: write method without canonical_operation",
                "/economy.shop.v1.ShopService/Sell: canonical_operation \"sell\" is not MODULE_ACTION_OBJECT",
                "canonical_operation SHOP_GIVE_ITEM is declared by /economy.shop.v1.ShopService/Gift, /economy.shop.v1.ShopService/Give",
            ]
        );
    }

    #[test]
    fn server_streams_are_routed_and_client_streams_are_not() {
        let descriptor_set = compile(
            r#"syntax = "proto3";
            package economy.shop.v1;
            message Empty {}
            service ShopService {
              rpc Browse(Empty) returns (Empty) { option idempotency_level = NO_SIDE_EFFECTS; }
              rpc Watch(Empty) returns (stream Empty) { option idempotency_level = NO_SIDE_EFFECTS; }
              rpc Upload(stream Empty) returns (Empty) { option idempotency_level = NO_SIDE_EFFECTS; }
              rpc Chat(stream Empty) returns (stream Empty) { option idempotency_level = NO_SIDE_EFFECTS; }
            }"#,
        );
        let registry = Registry::load(&descriptor_set).expect("registry");
        assert_eq!(registry.check(), Ok(()));
        let streaming = |path: &str| registry.method(path).map(|method| method.server_streaming);
        assert_eq!(streaming("/economy.shop.v1.ShopService/Browse"), Some(false));
        assert_eq!(streaming("/economy.shop.v1.ShopService/Watch"), Some(true));
        assert_eq!(streaming("/economy.shop.v1.ShopService/Upload"), None);
        assert_eq!(streaming("/economy.shop.v1.ShopService/Chat"), None);
        let real = Registry::load(economy_proto::FILE_DESCRIPTOR_SET).expect("registry");
        let watch = real.method("/economy.items.v1.ItemService/WatchItemEvents").expect("routed");
        assert!(watch.server_streaming && watch.read_only && watch.canonical_operation.is_none());
    }

    #[test]
    fn a_server_stream_that_is_not_a_read_is_refused() {
        let descriptor_set = compile(
            r#"syntax = "proto3";
            package economy.shop.v1;
            import "economy/options/v1/options.proto";
            message Empty {}
            service ShopService {
              rpc Drain(Empty) returns (stream Empty) {
                option (economy.options.v1.method) = {canonical_operation: "SHOP_DRAIN_STOCK"};
              }
              rpc Tail(Empty) returns (stream Empty);
            }"#,
        );
        let registry = Registry::load(&descriptor_set).expect("registry");
        let UnmappedMethods(problems) = registry.check().expect_err("refused");
        let refusal = |name: &str| {
            format!(
                "/economy.shop.v1.ShopService/{name}: server-streaming method without idempotency_level = \
                 NO_SIDE_EFFECTS (a stream cannot be made idempotent)"
            )
        };
        assert_eq!(problems, [refusal("Drain"), refusal("Tail")]);
    }

    #[test]
    fn canonical_operation_shape() {
        for good in ["LEDGER_ADJUST_BALANCE", "MARKET_PURCHASE_LISTING", "A_B"] {
            assert!(is_canonical_operation(good), "{good}");
        }
        for bad in ["LEDGER", "ledger_adjust", "LEDGER__X", "_LEDGER_X", "LEDGER_X_", "LEDGER_X1"] {
            assert!(!is_canonical_operation(bad), "{bad}");
        }
    }
}
