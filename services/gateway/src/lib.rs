//! The gateway (DESIGN.md §3 Gateway): the only public endpoint. A generic proxy driven by
//! the descriptor set routes every public RPC of the services; it authenticates callers,
//! enforces each method's policy and makes every write safe to retry.

pub mod auth;
pub mod canonical;
pub mod registry;

/// `ErrorInfo.domain` of the gateway's own errors.
pub const DOMAIN: &str = "economy.gateway";

#[cfg(test)]
mod test_support {
    use std::path::Path;

    /// Compiles `proto` (as `economy/shop/v1/shop.proto`, beside the real options) into an
    /// encoded descriptor set that keeps custom options.
    pub fn compile(proto: &str) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("economy-shop-{}", uuid::Uuid::now_v7()));
        let options = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/economy/options/v1/options.proto");
        std::fs::create_dir_all(dir.join("economy/options/v1")).expect("dir");
        std::fs::create_dir_all(dir.join("economy/shop/v1")).expect("dir");
        std::fs::copy(options, dir.join("economy/options/v1/options.proto")).expect("copy");
        std::fs::write(dir.join("economy/shop/v1/shop.proto"), proto).expect("write");
        let mut compiler = protox::Compiler::new([&dir]).expect("compiler");
        compiler.include_imports(true).open_file("economy/shop/v1/shop.proto").expect("compile");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        compiler.encode_file_descriptor_set()
    }
}
