//! The client commands, one module per area of the API (ledger, items, redemption, market). Each command
//! prints plain lines to stdout and returns the process exit status; failures propagate
//! as errors that `client::report` prints.

pub mod admin;
pub mod backup;
pub mod balances;
pub mod catalog;
pub mod databases;
pub mod gateway;
pub mod health;
pub mod history;
pub mod holds;
pub mod import;
pub mod items;
pub mod jobs;
pub mod market;
pub mod migrate;
pub mod offers;
pub mod redemption;
pub mod statement;
pub mod watch;

use clap::Args;
use economy_proto::ledger::v1 as pb;
use pb::account_ref::Account;

/// Selects one ledger account: `--user U` or `--system NAME`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct AccountArgs {
    /// A user's account.
    #[arg(long, value_name = "USER_ID")]
    pub user: Option<i64>,
    /// A system account, e.g. `SYSTEM_ISSUANCE`.
    #[arg(long, value_name = "NAME")]
    pub system: Option<String>,
}

impl AccountArgs {
    /// The selected account (clap guarantees exactly one is set; a user wins otherwise).
    pub fn account(&self) -> pb::AccountRef {
        match (self.user, &self.system) {
            (Some(user_id), _) => user(user_id),
            (None, Some(name)) => pb::AccountRef { account: Some(Account::System(name.clone())) },
            (None, None) => pb::AccountRef { account: None },
        }
    }
}

/// The account of `user_id`.
pub fn user(user_id: i64) -> pb::AccountRef {
    pb::AccountRef { account: Some(Account::UserId(user_id)) }
}
