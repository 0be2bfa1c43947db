//! Importing orders of an existing economy (docs/import.md, "Redemption orders"): a
//! pending order keeps its code (given in plaintext, hashed here and dropped, or already
//! as its SHA-256) and its expiry, and locks its item; a fulfilled one is recorded as it
//! was. The order id and creation key derive from the row's external id, so importing the
//! row again finds the same order.

use sha2::{Digest, Sha256};

use super::code::Code;

/// Prefix of an imported order's creation key: `import:<external id>`.
pub const IMPORT_KEY_PREFIX: &str = "import:";
/// Longest external id, bytes.
pub const MAX_EXTERNAL_ID: usize = 120;
/// `created_by` of every imported order.
pub const IMPORT_ACTOR: &str = "import";

/// The status an order may be imported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStatus {
    /// Unredeemed: its code redeems until `expires_at`; its item is locked for it.
    Pending,
    /// Redeemed before the import.
    Fulfilled,
}

/// One validated import row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedOrder {
    /// The legacy id.
    pub external_id: String,
    /// The item (its id in the items service).
    pub item_instance_id: String,
    /// The item's owner.
    pub owner_user_id: i64,
    /// Pending or fulfilled.
    pub status: ImportStatus,
    /// `sha256_hex` of the normalized code.
    pub code_hash: String,
    /// Legacy creation instant, ms since the epoch.
    pub created_at: i64,
    /// The code no longer redeems from this instant, ms.
    pub expires_at: i64,
    /// When a fulfilled order was redeemed, ms.
    pub resolved_at: Option<i64>,
    /// The staff user who redeemed it; `None` when unknown.
    pub redeemer_user_id: Option<i64>,
}

impl ImportedOrder {
    /// The creation key, `import:<external id>`.
    pub fn create_key(&self) -> String {
        format!("{IMPORT_KEY_PREFIX}{}", self.external_id)
    }

    /// The order id: a UUID made of the first 16 bytes of SHA-256 of the creation key, so
    /// every import of the row names the same order (and its item lock the same holder).
    pub fn order_id(&self) -> String {
        let digest = Sha256::digest(format!("redemption-{}", self.create_key()).as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }

    /// Whether `other` (the stored order of the same key) is this row: same item, owner,
    /// creation and expiry (the code may have been reissued and the status moved on since).
    pub fn matches(&self, item_instance_id: &str, owner_user_id: i64, created_at: i64, expires_at: i64) -> bool {
        (self.item_instance_id.as_str(), self.owner_user_id, self.created_at, self.expires_at)
            == (item_instance_id, owner_user_id, created_at, expires_at)
    }
}

/// An external id: 1-120 printable ASCII characters without spaces.
pub fn parse_external_id(value: &str) -> Result<String, &'static str> {
    let ok = (1..=MAX_EXTERNAL_ID).contains(&value.len()) && value.bytes().all(|byte| byte.is_ascii_graphic());
    if ok { Ok(value.to_owned()) } else { Err("must be 1-120 printable ASCII characters without spaces") }
}

/// The stored hash of a code given either in plaintext (normalized and hashed; the
/// plaintext goes no further) or as its SHA-256 (64 hex characters). Exactly one.
pub fn code_hash(plaintext: &str, sha256: &str) -> Result<String, &'static str> {
    match (plaintext.is_empty(), sha256.is_empty()) {
        (false, true) => {
            Code::parse(plaintext).map(|code| code.hash()).ok_or("is not a code of 12 symbols of the alphabet")
        }
        (true, false) if sha256.len() == 64 && sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) => {
            Ok(sha256.to_ascii_lowercase())
        }
        (true, false) => Err("must be 64 hexadecimal characters"),
        _ => Err("exactly one of code and code_sha256 must be set"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(external_id: &str) -> ImportedOrder {
        ImportedOrder {
            external_id: external_id.into(),
            item_instance_id: "i".into(),
            owner_user_id: 1,
            status: ImportStatus::Pending,
            code_hash: "h".into(),
            created_at: 1,
            expires_at: 2,
            resolved_at: None,
            redeemer_user_id: None,
        }
    }

    #[test]
    fn ids_derive_from_the_external_id() {
        assert_eq!(order("R-1").order_id(), order("R-1").order_id());
        assert_ne!(order("R-1").order_id(), order("R-2").order_id());
        assert!(uuid::Uuid::try_parse(&order("R-1").order_id()).is_ok());
        assert_eq!(order("R-1").create_key(), "import:R-1");
    }

    #[test]
    fn codes_are_hashed_once_normalized() {
        let plain = code_hash("abcd-efgh-jk23", "").expect("plain");
        assert_eq!(plain, Code::parse("ABCDEFGHJK23").expect("code").hash());
        assert_eq!(code_hash("", &plain.to_ascii_uppercase()), Ok(plain.clone()));
        assert!(code_hash("ABCD", "").is_err());
        assert!(code_hash("", "xyz").is_err());
        assert!(code_hash("ABCDEFGHJK23", &plain).is_err());
        assert!(code_hash("", "").is_err());
    }
}
