//! The gateway (DESIGN.md §3 Gateway): the only public endpoint. A generic proxy driven by
//! the descriptor set routes every public RPC of the services; it authenticates callers,
//! enforces each method's policy and makes every write safe to retry.

pub mod registry;
