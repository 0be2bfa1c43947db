//! Generated protobuf messages and gRPC services of every Economy API, compiled from
//! `proto/` by `build.rs` (protox + tonic-prost-build, no system protoc), and the
//! encoded file descriptor set used for server reflection and by the gateway.

#![allow(missing_docs, clippy::all)]

/// Encoded `google.protobuf.FileDescriptorSet` of every proto under `proto/` (the Economy
/// APIs and the `google.rpc` error details) and their imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/economy_descriptor.bin"));

/// `google.rpc`: the error detail messages Economy attaches to a status (`ErrorInfo`,
/// `BadRequest`; docs/errors.md), wire-compatible with googleapis' own.
pub mod google {
    /// The detail messages.
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

/// `economy.options.v1`: method and field policies read by the gateway.
pub mod options {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/economy.options.v1.rs"));
    }
}

/// `economy.audit.v1`: the audit record every compensation tool writes.
pub mod audit {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/economy.audit.v1.rs"));
    }
}

/// `economy.jobs.v1`: the runs of the scheduled jobs every service lists.
pub mod jobs {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/economy.jobs.v1.rs"));
    }
}

/// `economy.ledger.v1`: the Asset Ledger API.
pub mod ledger {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/economy.ledger.v1.rs"));
    }
}

/// `economy.items.v1`: the Item Instances API.
pub mod items {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/economy.items.v1.rs"));
    }
}

/// `economy.redemption.v1`: the Redemption Orders API.
pub mod redemption {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/economy.redemption.v1.rs"));
    }
}

/// `economy.market.v1`: the Market API.
pub mod market {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/economy.market.v1.rs"));
    }
}

/// `economy.gateway.v1`: the gateway's own services (backpack, operations).
pub mod gateway {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/economy.gateway.v1.rs"));
    }
}
