//! What a `WatchItemEvents` stream carries (docs/items.md, "Watching events").

use super::event::EventType;
use super::ids::{TemplateCode, UserId};

/// Which events a stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFilter {
    /// Only events whose previous or new owner is this user.
    pub owner: Option<UserId>,
    /// Only events of instances of this template.
    pub template: Option<TemplateCode>,
    /// Only these types; empty for all.
    pub types: Vec<EventType>,
}

impl WatchFilter {
    /// The types to bind into `event_type IN ($a, …)`, always seven values: the wanted
    /// types padded with `''`, which matches none (one static SQL text per query).
    pub fn type_binds(&self) -> [&'static str; 7] {
        let wanted = EventType::ALL.into_iter().filter(|kind| self.types.is_empty() || self.types.contains(kind));
        let mut binds = [""; 7];
        for (slot, kind) in binds.iter_mut().zip(wanted) {
            *slot = kind.as_str();
        }
        binds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_binds_pad_to_seven() {
        let all = WatchFilter { owner: None, template: None, types: Vec::new() };
        assert_eq!(all.type_binds(), ["granted", "locked", "unlocked", "transferred", "used", "expired", "revoked"]);
        let some = WatchFilter { types: vec![EventType::Used, EventType::Granted], ..all };
        assert_eq!(some.type_binds(), ["granted", "used", "", "", "", "", ""]);
    }
}
