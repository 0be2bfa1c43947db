//! Stream cursors of `WatchItemEvents` (docs/items.md, "Watching events"): a point in
//! the order `(stream_position, event id)` of the event stream. Clients see it as the
//! opaque text `v1.<position>.<event id>`; an empty event id stands before every event
//! of its position.

use std::fmt;

use super::ids::ItemId;

/// A point in the event stream; events strictly after it are delivered next.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The stream position (SQLite: commit sequence; PostgreSQL: writing transaction id).
    pub position: i64,
    /// The last event id at `position` already passed; empty: none of them.
    pub event_id: String,
}

impl Cursor {
    /// Before every event.
    pub fn start() -> Self {
        Self::before(0)
    }

    /// Before every event at `position` or later.
    pub fn before(position: i64) -> Self {
        Self { position, event_id: String::new() }
    }

    /// Right after the event `event_id` at `position`.
    pub fn after(position: i64, event_id: &str) -> Self {
        Self { position, event_id: event_id.to_owned() }
    }

    /// Parses `v1.<position>.<event id>` (position >= 0; event id empty or a UUID).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        const BAD: &str = "must be a cursor returned by WatchItemEvents";
        let rest = text.strip_prefix("v1.").ok_or(BAD)?;
        let (digits, event_id) = rest.split_once('.').ok_or(BAD)?;
        // Canonical digits only: no sign, no leading zero.
        let position: i64 =
            digits.parse().ok().filter(|position: &i64| *position >= 0 && position.to_string() == digits).ok_or(BAD)?;
        let event_id = match event_id {
            "" => String::new(),
            id => ItemId::parse(id).map_err(|_| BAD)?.to_string(),
        };
        Ok(Self { position, event_id })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "v1.{}.{}", self.position, self.event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let id = ItemId::generate().to_string();
        for cursor in [Cursor::start(), Cursor::before(42), Cursor::after(7, &id)] {
            assert_eq!(Cursor::parse(&cursor.to_string()), Ok(cursor));
        }
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let id = ItemId::generate().to_string();
        for text in
            ["", "v1", "v1.", "v2.1.", "v1.-1.", "v1.+1.", "v1.01.", "v1.x.", "v1.1.nope", &format!("v1.1.{id}.")]
        {
            assert!(Cursor::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn order_is_position_then_event() {
        assert!(Cursor::before(1) < Cursor::after(1, "a"));
        assert!(Cursor::after(1, "b") < Cursor::before(2));
    }
}
