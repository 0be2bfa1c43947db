//! The cursor of a backpack stream (docs/gateway.md, "Watching a backpack"): the
//! positions of both sources it merges, as `bp1~<ledger cursor>~<items cursor>`.

use std::fmt;

use economy_kit::watch::Cursor;

/// Where a backpack stream stands in the ledger's entries and in the item events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackpackCursor {
    /// Everything of the ledger up to here was delivered.
    pub ledger: Cursor,
    /// Everything of items up to here was delivered.
    pub items: Cursor,
}

impl BackpackCursor {
    /// Parses the text of [`fmt::Display`]; the error describes a valid value.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        const BAD: &str = "must be a cursor returned by WatchBackpack";
        let rest = text.strip_prefix("bp1~").ok_or(BAD)?;
        let (ledger, items) = rest.split_once('~').ok_or(BAD)?;
        Ok(Self { ledger: Cursor::parse(ledger).map_err(|_| BAD)?, items: Cursor::parse(items).map_err(|_| BAD)? })
    }
}

impl fmt::Display for BackpackCursor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "bp1~{}~{}", self.ledger, self.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_malformed_ones_are_refused() {
        let id = uuid::Uuid::now_v7().to_string();
        let cursor = BackpackCursor { ledger: Cursor::after(9, &id), items: Cursor::before(4) };
        assert_eq!(BackpackCursor::parse(&cursor.to_string()), Ok(cursor.clone()));
        for text in ["", "bp1~", "bp1~v1.1.", "bp2~v1.1.~v1.2.", "bp1~v1.1.~nope", "v1.1.", "bp1~v1.1.~v1.2.~"] {
            assert!(BackpackCursor::parse(text).is_err(), "{text}");
        }
    }
}
