//! Redemption codes (docs/redemption.md, "Codes"): 12 symbols from
//! `23456789ABCDEFGHJKMNPQRSTUVWXYZ` (no 0 O I L 1), drawn uniformly from a CSPRNG,
//! shown `XXXX-XXXX-XXXX`. Only `sha256_hex` of the normalized form is ever stored.

use rand::seq::IndexedRandom;
use sha2::{Digest, Sha256};

/// The 31 symbols of a code.
pub const ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Symbols in a code.
pub const LENGTH: usize = 12;

/// A normalized code. Its `Debug` never shows the plaintext; `reveal` does, for the one
/// response that carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl std::fmt::Debug for Code {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Code(<redacted>)")
    }
}

impl Code {
    /// A fresh code: each symbol chosen uniformly (rejection sampling, no modulo bias)
    /// by the thread-local CSPRNG (ChaCha, seeded from the operating system).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let symbols = (0..LENGTH).filter_map(|_| ALPHABET.choose(&mut rng)).map(|&byte| char::from(byte));
        Self(symbols.collect())
    }

    /// Normalizes a typed code (uppercase; `-` and whitespace removed) and checks it is 12
    /// symbols of the alphabet. `None` is `CODE_INVALID_FORMAT`.
    pub fn parse(input: &str) -> Option<Self> {
        let normalized: String = input
            .chars()
            .filter(|char| *char != '-' && !char.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let valid = normalized.len() == LENGTH && normalized.bytes().all(|byte| ALPHABET.contains(&byte));
        valid.then_some(Self(normalized))
    }

    /// `sha256_hex` of the normalized code: 64 lowercase hex characters, what is stored.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The plaintext as shown to the customer, `XXXX-XXXX-XXXX`.
    pub fn reveal(&self) -> String {
        let (first, rest) = self.0.split_at(4);
        let (second, third) = rest.split_at(4);
        format!("{first}-{second}-{third}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_twelve_symbols_of_the_alphabet() {
        for _ in 0..200 {
            let shown = Code::generate().reveal();
            assert_eq!(shown.len(), 14);
            assert_eq!(shown.as_bytes()[4], b'-');
            assert_eq!(shown.as_bytes()[9], b'-');
            assert!(shown.bytes().filter(|byte| *byte != b'-').all(|byte| ALPHABET.contains(&byte)), "{shown}");
        }
    }

    #[test]
    fn every_symbol_is_drawn_about_equally() {
        let mut counts = [0_u32; 31];
        for _ in 0..2_000 {
            for byte in Code::generate().0.bytes() {
                if let Some(index) = ALPHABET.iter().position(|symbol| *symbol == byte) {
                    counts[index] += 1;
                }
            }
        }
        // 24,000 draws: ~774 per symbol; a biased or missing symbol falls far outside.
        assert!(counts.iter().all(|count| (600..=950).contains(count)), "{counts:?}");
    }

    #[test]
    fn typed_codes_normalize_before_hashing() {
        let code = Code::parse("abcd-efgh-jk23").expect("valid");
        assert_eq!(code.reveal(), "ABCD-EFGH-JK23");
        assert_eq!(Code::parse(" ABCD EFGH JK23 ").expect("valid").hash(), code.hash());
        assert_eq!(code.hash().len(), 64);
        assert!(code.hash().bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)));
    }

    #[test]
    fn malformed_codes_are_refused() {
        for input in ["", "ABCD-EFGH-JK2", "ABCD-EFGH-JK234", "ABCD-EFGH-JK20", "ABCD-EFGH-JKO1", "ABCD-EFGH-JKÄ2"] {
            assert!(Code::parse(input).is_none(), "{input}");
        }
    }

    #[test]
    fn debug_never_shows_the_plaintext() {
        let code = Code::parse("ABCD-EFGH-JK23").expect("valid");
        assert_eq!(format!("{code:?}"), "Code(<redacted>)");
    }
}
