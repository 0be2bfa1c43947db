//! The ledger's rules, free of SQL and gRPC: identifiers with validating constructors,
//! journal entries and their balance check, holds and their state machine, the write
//! commands and the errors they can raise (docs/ledger.md).

pub mod catalog;
pub mod commands;
pub mod compensation;
pub mod entry;
pub mod error;
pub mod hold;
pub mod ids;
pub mod reconcile;

pub use error::LedgerError;
