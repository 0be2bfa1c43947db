//! Assets and accounts that committed entries proved to exist. Neither is ever deleted
//! (and the foreign keys of `balances` / `postings` still guard every write), so later
//! entries skip their existence checks (two to three statements fewer per entry) and
//! may take the faster write paths (docs/ledger.md, "Write paths").

use std::collections::HashSet;
use std::sync::RwLock;

use crate::domain::entry::Leg;

/// Entries kept per set before it is emptied and refilled (bounds memory: ~100 B each).
const MAX_KNOWN: usize = 100_000;

/// Asset codes and account keys known to exist.
#[derive(Debug, Default)]
pub(super) struct KnownRows {
    assets: RwLock<HashSet<String>>,
    accounts: RwLock<HashSet<String>>,
}

impl KnownRows {
    pub(super) fn has_asset(&self, code: &str) -> bool {
        contains(&self.assets, code)
    }

    pub(super) fn has_account(&self, key: &str) -> bool {
        contains(&self.accounts, key)
    }

    /// Records the assets and accounts of `legs`; call only once their entry committed.
    pub(super) fn learn(&self, legs: &[Leg]) {
        for leg in legs {
            insert(&self.assets, leg.asset.as_str());
            insert(&self.accounts, &leg.account.key());
        }
    }
}

fn contains(set: &RwLock<HashSet<String>>, value: &str) -> bool {
    set.read().is_ok_and(|set| set.contains(value))
}

fn insert(set: &RwLock<HashSet<String>>, value: &str) {
    if contains(set, value) {
        return;
    }
    if let Ok(mut set) = set.write() {
        if set.len() >= MAX_KNOWN {
            set.clear();
        }
        set.insert(value.to_owned());
    }
}
