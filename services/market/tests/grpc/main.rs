//! Integration tests of the market, through the real gateway in front of real ledger,
//! items and market services (each on `127.0.0.1:0` with its own fresh database).

mod assets;
mod common;
mod compensation;
mod faults;
mod items;
mod offers;
mod races;
mod recovery;
