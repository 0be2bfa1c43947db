//! The item rules, free of SQL and gRPC (docs/items.md): identifiers with validating
//! constructors, templates, instances and their state machine, events and fingerprints,
//! grouping keys, and the errors an operation can raise.

pub mod compensation;
pub mod error;
pub mod event;
pub mod grant;
pub mod group;
pub mod ids;
pub mod import;
pub mod item;
pub mod template;
pub mod transition;
pub mod watch;

pub use error::ItemError;
