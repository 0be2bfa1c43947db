//! The field policies of `economy.options.v1.field` (`fingerprint_exclude`, `sensitive`;
//! docs/idempotency.md), read once from the descriptor pool when the gateway starts, so
//! that fingerprinting a request or redacting a response never decodes field options.

use std::collections::HashSet;

use prost_reflect::{DescriptorPool, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value};

const FIELD_EXTENSION: &str = "economy.options.v1.field";

/// Which flag of a field's policy is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// `fingerprint_exclude`: left out of the request fingerprint.
    FingerprintExclude,
    /// `sensitive`: redacted before a response is stored.
    Sensitive,
}

/// Fields carrying each flag, and the message types that hold such a field at any depth.
#[derive(Debug, Clone, Default)]
pub struct FieldPolicies {
    excluded: Flagged,
    sensitive: Flagged,
}

/// One flag: the full names of the fields carrying it and of the message types reaching one.
#[derive(Debug, Clone, Default)]
struct Flagged {
    fields: HashSet<String>,
    messages: HashSet<String>,
}

impl FieldPolicies {
    /// Reads the flags of every field of every message in `pool`.
    pub fn load(pool: &DescriptorPool) -> Self {
        let Some(extension) = pool.get_extension_by_name(FIELD_EXTENSION) else {
            return Self::default();
        };
        let mut policies = Self::default();
        for message in pool.all_messages() {
            for field in message.fields() {
                policies.read(&extension, &field);
            }
        }
        policies.excluded.close_over(pool);
        policies.sensitive.close_over(pool);
        policies
    }

    /// Records the flags `field`'s options set.
    fn read(&mut self, extension: &ExtensionDescriptor, field: &FieldDescriptor) {
        let options = field.options();
        if !options.has_extension(extension) {
            return;
        }
        let policy = options.get_extension(extension);
        let flag = |name: &str| {
            policy
                .as_message()
                .and_then(|policy| policy.get_field_by_name(name))
                .is_some_and(|value| value.as_ref() == &Value::Bool(true))
        };
        for (selection, name) in
            [(Selection::FingerprintExclude, "fingerprint_exclude"), (Selection::Sensitive, "sensitive")]
        {
            if flag(name) {
                self.flagged_mut(selection).fields.insert(field.full_name().to_owned());
            }
        }
    }

    /// True when `field` carries the flag.
    pub fn selects(&self, selection: Selection, field: &FieldDescriptor) -> bool {
        self.flagged(selection).fields.contains(field.full_name())
    }

    /// True when a message of type `message` may hold a flagged field (at any depth).
    pub fn reaches(&self, selection: Selection, message: &MessageDescriptor) -> bool {
        self.flagged(selection).messages.contains(message.full_name())
    }

    fn flagged(&self, selection: Selection) -> &Flagged {
        match selection {
            Selection::FingerprintExclude => &self.excluded,
            Selection::Sensitive => &self.sensitive,
        }
    }

    fn flagged_mut(&mut self, selection: Selection) -> &mut Flagged {
        match selection {
            Selection::FingerprintExclude => &mut self.excluded,
            Selection::Sensitive => &mut self.sensitive,
        }
    }
}

impl Flagged {
    /// Marks every message type with a flagged field, then, until nothing changes, every
    /// one with a field (also a list or a map value) of a marked type.
    fn close_over(&mut self, pool: &DescriptorPool) {
        let holds = |messages: &HashSet<String>, fields: &HashSet<String>, message: &MessageDescriptor| {
            message.fields().any(|field| {
                fields.contains(field.full_name())
                    || matches!(field.kind(), Kind::Message(inner) if messages.contains(inner.full_name()))
            })
        };
        loop {
            let marked: Vec<String> = pool
                .all_messages()
                .filter(|message| !self.messages.contains(message.full_name()))
                .filter(|message| holds(&self.messages, &self.fields, message))
                .map(|message| message.full_name().to_owned())
                .collect();
            if marked.is_empty() {
                return;
            }
            self.messages.extend(marked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::compile;

    #[test]
    fn flags_are_read_once_and_reach_through_lists_maps_and_cycles() {
        let bytes = compile(
            r#"syntax = "proto3";
            package economy.shop.v1;
            import "economy/options/v1/options.proto";
            message Secret { string code = 1 [(economy.options.v1.field) = {sensitive: true}]; string id = 2; }
            message Line { string nonce = 1 [(economy.options.v1.field) = {fingerprint_exclude: true}]; }
            message Order { repeated Line lines = 1; map<string, Secret> secrets = 2; Order parent = 3; }
            message Tree { Tree child = 1; int64 size = 2; }"#,
        );
        let pool = DescriptorPool::decode(bytes.as_slice()).expect("pool");
        let policies = FieldPolicies::load(&pool);
        let message = |name: &str| pool.get_message_by_name(&format!("economy.shop.v1.{name}")).expect("message");
        let field = |owner: &str, name: &str| message(owner).get_field_by_name(name).expect("field");

        assert!(policies.selects(Selection::Sensitive, &field("Secret", "code")));
        assert!(!policies.selects(Selection::FingerprintExclude, &field("Secret", "code")));
        assert!(!policies.selects(Selection::Sensitive, &field("Secret", "id")));
        assert!(policies.selects(Selection::FingerprintExclude, &field("Line", "nonce")));

        for (name, excluded, sensitive) in
            [("Secret", false, true), ("Line", true, false), ("Order", true, true), ("Tree", false, false)]
        {
            assert_eq!(policies.reaches(Selection::FingerprintExclude, &message(name)), excluded, "{name}");
            assert_eq!(policies.reaches(Selection::Sensitive, &message(name)), sensitive, "{name}");
        }
    }
}
