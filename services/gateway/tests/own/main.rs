//! The gateway's own services (backpack, operations) against the real stack: ledger,
//! items, redemption and market behind a real gateway, each on `127.0.0.1:0` with its
//! own fresh database.

mod backpack;
mod common;
mod consistency;
mod jobs;
mod watch_backpack;
