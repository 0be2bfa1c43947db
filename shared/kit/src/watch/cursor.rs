//! Stream cursors (docs/streams.md): a point in the order `(position, id)` of a stream.
//! Clients see it as the opaque text `v1.<position>.<id>`; an empty id stands before
//! every row of its position.

use std::fmt;

/// A point in a stream; rows strictly after it are delivered next.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The stream position (SQLite: commit sequence; PostgreSQL: writing transaction id).
    pub position: i64,
    /// The last row id (a UUID) at `position` already passed; empty: none of them.
    pub id: String,
}

impl Cursor {
    /// Before every row.
    pub fn start() -> Self {
        Self::before(0)
    }

    /// Before every row at `position` or later.
    pub fn before(position: i64) -> Self {
        Self { position, id: String::new() }
    }

    /// Right after the row `id` at `position`.
    pub fn after(position: i64, id: &str) -> Self {
        Self { position, id: id.to_owned() }
    }

    /// Parses `v1.<position>.<id>` (canonical decimal position >= 0; id empty or a UUID).
    /// The error describes a valid value, for a field violation.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        const BAD: &str = "must be a cursor returned by this stream";
        let rest = text.strip_prefix("v1.").ok_or(BAD)?;
        let (digits, id) = rest.split_once('.').ok_or(BAD)?;
        let position: i64 =
            digits.parse().ok().filter(|position: &i64| *position >= 0 && position.to_string() == digits).ok_or(BAD)?;
        let id = match id {
            "" => String::new(),
            id => uuid::Uuid::parse_str(id).ok().filter(|uuid| uuid.to_string() == id).ok_or(BAD)?.to_string(),
        };
        Ok(Self { position, id })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "v1.{}.{}", self.position, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let id = uuid::Uuid::now_v7().to_string();
        for cursor in [Cursor::start(), Cursor::before(42), Cursor::after(7, &id)] {
            assert_eq!(Cursor::parse(&cursor.to_string()), Ok(cursor));
        }
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let id = uuid::Uuid::now_v7().to_string();
        let upper = id.to_uppercase();
        for text in [
            "",
            "v1",
            "v1.",
            "v2.1.",
            "v1.-1.",
            "v1.+1.",
            "v1.01.",
            "v1.x.",
            "v1.1.nope",
            &format!("v1.1.{id}."),
            &format!("v1.1.{upper}"),
        ] {
            assert!(Cursor::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn order_is_position_then_id() {
        assert!(Cursor::before(1) < Cursor::after(1, "a"));
        assert!(Cursor::after(1, "b") < Cursor::before(2));
    }
}
