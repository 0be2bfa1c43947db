//! Integration tests of the Redemption Orders service: the real server (and a real Items
//! service) on `127.0.0.1:0` with fresh databases, driven through real tonic clients.

mod common;
mod compensation;
mod create;
mod faults;
mod fulfill;
mod import;
mod recovery;
