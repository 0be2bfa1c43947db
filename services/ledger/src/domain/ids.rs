//! Identifiers and amounts, each built only through a validating `parse`, so an invalid
//! one cannot exist.

use std::fmt;

use serde::Serialize;

/// Prefix of user account keys: `user:<id>`.
const USER_PREFIX: &str = "user:";

/// A positive user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct UserId(i64);

impl UserId {
    /// Accepts ids > 0.
    pub fn parse(id: i64) -> Result<Self, &'static str> {
        if id > 0 { Ok(Self(id)) } else { Err("must be a positive user id") }
    }

    /// The raw id.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A code of the catalog (asset code, conversion rule id): a letter, then letters,
/// digits or `_`; at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Code(String);

/// An asset code (`POINTS`, `red_shard`).
pub type AssetCode = Code;
/// A conversion rule id.
pub type RuleId = Code;

impl Code {
    /// Validates the shape.
    pub fn parse(code: &str) -> Result<Self, &'static str> {
        let mut bytes = code.bytes();
        let starts_with_letter = bytes.next().is_some_and(|byte| byte.is_ascii_alphabetic());
        let rest_ok = bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
        if starts_with_letter && rest_ok && code.len() <= 64 {
            Ok(Self(code.to_owned()))
        } else {
            Err("must be a letter followed by letters, digits or '_' (at most 64)")
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Code {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A ledger account: a user's, or a named system account (`SYSTEM_ISSUANCE`, …) that may
/// go negative.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AccountId {
    /// A user's account, created on first use; never negative.
    User(UserId),
    /// A system account: `SYSTEM_` then upper-case letters, digits or `_` (at most 64).
    System(String),
}

/// Mint / burn counterpart of every adjustment and conversion.
pub const SYSTEM_ISSUANCE: &str = "SYSTEM_ISSUANCE";
/// Receives the market's fees.
pub const SYSTEM_PLATFORM_FEE: &str = "SYSTEM_PLATFORM_FEE";
/// Receives the prices of the shop's offers (the market's default revenue account).
pub const SYSTEM_SHOP_REVENUE: &str = "SYSTEM_SHOP_REVENUE";

impl AccountId {
    /// The system account `name`, validated.
    pub fn system(name: &str) -> Result<Self, &'static str> {
        if economy_kit::accounts::is_system_account(name) {
            Ok(Self::System(name.to_owned()))
        } else {
            Err("must be SYSTEM_ followed by A-Z, 0-9 or '_'")
        }
    }

    /// SYSTEM_ISSUANCE.
    pub fn issuance() -> Self {
        Self::System(SYSTEM_ISSUANCE.to_owned())
    }

    /// The storage key: `user:<id>` or the system name.
    pub fn key(&self) -> String {
        match self {
            Self::User(user) => format!("{USER_PREFIX}{}", user.get()),
            Self::System(name) => name.clone(),
        }
    }

    /// Parses a storage key written by `key`.
    pub fn from_key(key: &str) -> Result<Self, &'static str> {
        match key.strip_prefix(USER_PREFIX) {
            Some(id) => UserId::parse(id.parse().map_err(|_| "bad user account key")?).map(Self::User),
            None => Self::system(key),
        }
    }

    /// The user of a user account.
    pub fn user(&self) -> Option<UserId> {
        match self {
            Self::User(user) => Some(*user),
            Self::System(_) => None,
        }
    }

    /// The lowest balance the account may reach: 0 for users, `i64::MIN` for system
    /// accounts (docs/ledger.md, "Accounts": system accounts may go negative, user accounts never).
    pub fn floor(&self) -> i64 {
        match self {
            Self::User(_) => 0,
            Self::System(_) => i64::MIN,
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.key())
    }
}

/// A strictly positive amount in an asset's smallest unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Amount(i64);

impl Amount {
    /// Accepts amounts > 0.
    pub fn parse(amount: i64) -> Result<Self, &'static str> {
        if amount > 0 { Ok(Self(amount)) } else { Err("must be a positive amount") }
    }

    /// The raw amount.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// An idempotency key: 1-128 printable ASCII characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates the shape.
    pub fn parse(key: &str) -> Result<Self, &'static str> {
        if (1..=128).contains(&key.len()) && key.bytes().all(|byte| byte.is_ascii_graphic()) {
            Ok(Self(key.to_owned()))
        } else {
            Err("must be 1-128 printable ASCII characters without spaces")
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A UUID naming an entity this service created (journal entry, hold); kept in canonical
/// lowercase hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct EntityId(String);

/// A hold id.
pub type HoldId = EntityId;
/// A journal entry id.
pub type EntryId = EntityId;

impl EntityId {
    /// A new time-ordered UUIDv7.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Accepts any UUID spelling; stores the canonical form.
    pub fn parse(id: &str) -> Result<Self, &'static str> {
        uuid::Uuid::parse_str(id).map(|uuid| Self(uuid.to_string())).map_err(|_| "must be a UUID")
    }

    /// The canonical string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// An UPPER_SNAKE business type (`TRANSFER`, `MARKET_PURCHASE`), at most 64 characters.
pub fn parse_business_type(value: &str) -> Result<String, &'static str> {
    let valid = (1..=64).contains(&value.len())
        && value.bytes().next().is_some_and(|byte| byte.is_ascii_uppercase())
        && value.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_');
    if valid { Ok(value.to_owned()) } else { Err("must be UPPER_SNAKE, at most 64 characters") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert!(Code::parse("POINTS").is_ok());
        assert!(Code::parse("red_shard2").is_ok());
        for bad in ["", "1abc", "_x", "a-b", "a b", &"a".repeat(65)] {
            assert!(Code::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accounts_round_trip_through_keys() {
        let user = AccountId::User(UserId::parse(42).expect("id"));
        assert_eq!(AccountId::from_key(&user.key()), Ok(user.clone()));
        assert_eq!(user.floor(), 0);
        let system = AccountId::system("SYSTEM_PLATFORM_FEE").expect("system");
        assert_eq!(AccountId::from_key("SYSTEM_PLATFORM_FEE"), Ok(system.clone()));
        assert_eq!(system.floor(), i64::MIN);
        for bad in ["SYSTEM_", "system_x", "SYSTEM_a", "USER", "user:0", "user:x"] {
            assert!(AccountId::from_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_and_keys() {
        assert!(Amount::parse(0).is_err());
        assert!(Amount::parse(-5).is_err());
        assert_eq!(Amount::parse(i64::MAX).map(Amount::get), Ok(i64::MAX));
        assert!(IdempotencyKey::parse("idem_0190").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
    }

    #[test]
    fn entity_ids_are_canonical() {
        let id = EntityId::parse("0190F0A4-2B9C-7D1E-8F00-0123456789AB").expect("uuid");
        assert_eq!(id.as_str(), "0190f0a4-2b9c-7d1e-8f00-0123456789ab");
        assert!(EntityId::parse("nope").is_err());
    }

    #[test]
    fn business_types() {
        assert!(parse_business_type("MARKET_PURCHASE").is_ok());
        assert!(parse_business_type("market").is_err());
        assert!(parse_business_type("").is_err());
    }
}
