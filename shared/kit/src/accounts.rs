//! The shape of a ledger system account name, shared by the ledger (which creates and
//! checks its accounts) and the services that name one in their configuration (the
//! market's revenue account); docs/ledger.md, "Accounts".

/// True when `name` is a system account name: `SYSTEM_` then at least one of A-Z, 0-9 or
/// `_`, at most 64 characters in all.
pub fn is_system_account(name: &str) -> bool {
    let suffix = name.strip_prefix("SYSTEM_").unwrap_or_default();
    !suffix.is_empty()
        && name.len() <= 64
        && suffix.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_')
}

#[cfg(test)]
mod tests {
    #[test]
    fn system_account_names_are_system_then_upper_snake() {
        assert!(super::is_system_account("SYSTEM_SHOP_REVENUE"));
        for bad in ["SHOP", "SYSTEM_", "SYSTEM_shop", &format!("SYSTEM_{}", "A".repeat(58))] {
            assert!(!super::is_system_account(bad), "{bad}");
        }
    }
}
