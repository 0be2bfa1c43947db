//! From a verified token's claims to the caller (docs/gateway.md, "Authentication"): the
//! user id from `gateway.auth.user_id_claim`, the role level from a numeric claim
//! (`role_claim`) or from a list of role names (`role_list_claim`, mapped by `role_map`).
//!
//! A claim is named by its key, or by a dotted path into nested objects
//! (`realm_access.roles`) when no top-level key has the whole name (so namespaced claims
//! such as `https://example.com/roles` work as written).

use std::collections::BTreeMap;

use economy_kit::identity::Caller;
use serde_json::Value;

use crate::error::GatewayError;

/// The highest role level (admin); levels are `0..=MAX_ROLE_LEVEL`.
pub const MAX_ROLE_LEVEL: i32 = 100;

/// How claims name the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Claim holding the user id: a positive integer, as a JSON number or a decimal string.
    pub user_id_claim: String,
    /// Claim holding the role level (`0..=100`, a number or a decimal string); absent means
    /// 0. Used when `role_list_claim` is empty.
    pub role_claim: String,
    /// Claim holding a list of role names; when set, the role level is the highest
    /// `role_map` value among the names (0 when none is mapped or the claim is absent).
    pub role_list_claim: String,
    /// Role name -> level (`0..=100`).
    pub role_map: BTreeMap<String, i32>,
}

impl ClaimMapping {
    /// Checks the mapping itself: names not empty, every mapped level within `0..=100`.
    /// Errors name the setting (`gateway.auth.role_map.<name>`).
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.user_id_claim.is_empty(), "gateway.auth.user_id_claim must name a claim");
        anyhow::ensure!(
            !self.role_claim.is_empty() || !self.role_list_claim.is_empty(),
            "gateway.auth.role_claim or gateway.auth.role_list_claim must name a claim"
        );
        for (name, level) in &self.role_map {
            anyhow::ensure!(
                (0..=MAX_ROLE_LEVEL).contains(level),
                "gateway.auth.role_map.{name} = {level} is outside 0..={MAX_ROLE_LEVEL}"
            );
        }
        Ok(())
    }

    /// The caller named by `claims` (a verified token's payload).
    ///
    /// Errors: `TokenClaimInvalid` naming the claim when the user id is missing or not a
    /// positive integer, or the numeric role is not within `0..=100`.
    pub fn caller(&self, claims: &Value) -> Result<Caller, GatewayError> {
        let user_id = claim(claims, &self.user_id_claim)
            .and_then(integer)
            .filter(|user_id| *user_id > 0)
            .ok_or_else(|| GatewayError::token_claim(&self.user_id_claim))?;
        Ok(Caller::user(user_id, self.role_level(claims)?))
    }

    fn role_level(&self, claims: &Value) -> Result<i32, GatewayError> {
        if !self.role_list_claim.is_empty() {
            return Ok(self.mapped_role(claim(claims, &self.role_list_claim)));
        }
        let Some(value) = claim(claims, &self.role_claim) else {
            return Ok(0);
        };
        integer(value)
            .and_then(|level| i32::try_from(level).ok())
            .filter(|level| (0..=MAX_ROLE_LEVEL).contains(level))
            .ok_or_else(|| GatewayError::token_claim(&self.role_claim))
    }

    /// The highest mapped level among the names of a list claim (a single name counts as
    /// a list of one); 0 when none is mapped.
    fn mapped_role(&self, value: Option<&Value>) -> i32 {
        let names: Vec<&str> = match value {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(name)) => vec![name.as_str()],
            _ => Vec::new(),
        };
        names.iter().filter_map(|name| self.role_map.get(*name).copied()).max().unwrap_or(0)
    }
}

/// The claim `name`: the top-level key if present, else the dotted path.
pub fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    name.split('.').try_fold(claims, |value, key| value.get(key))
}

/// An integer from a JSON number without fraction or a decimal string in canonical form
/// (no sign, spaces or leading zeros: `"007"` and `"+7"` are not user 7).
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.parse::<i64>().ok().filter(|number| number.to_string() == *text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mapping() -> ClaimMapping {
        ClaimMapping {
            user_id_claim: "user_id".into(),
            role_claim: "role_level".into(),
            role_list_claim: String::new(),
            role_map: BTreeMap::new(),
        }
    }

    fn keycloak() -> ClaimMapping {
        ClaimMapping {
            user_id_claim: "sub".into(),
            role_list_claim: "realm_access.roles".into(),
            role_map: BTreeMap::from([("economy-admin".into(), 100), ("economy-staff".into(), 50)]),
            ..mapping()
        }
    }

    fn refused_claim(result: Result<Caller, GatewayError>) -> String {
        match result {
            Err(GatewayError::TokenClaimInvalid { claim }) => claim,
            other => panic!("expected TokenClaimInvalid, got {other:?}"),
        }
    }

    #[test]
    fn user_ids_are_positive_numbers_or_decimal_strings() {
        let map = mapping();
        assert_eq!(map.caller(&json!({"user_id": 42, "role_level": 50})).expect("caller"), Caller::user(42, 50));
        assert_eq!(map.caller(&json!({"user_id": "42"})).expect("caller"), Caller::user(42, 0));
        for bad in [json!({}), json!({"user_id": 0}), json!({"user_id": -3}), json!({"user_id": "abc"})] {
            assert_eq!(refused_claim(map.caller(&bad)), "user_id", "{bad}");
        }
        let uuid = json!({"user_id": "7c1d8c1e-3a43-4b0e-9a38-2f1a8f0e5e11"});
        assert_eq!(refused_claim(map.caller(&uuid)), "user_id");
        assert_eq!(refused_claim(map.caller(&json!({"user_id": 1.5}))), "user_id");
        for spelled_otherwise in ["007", "+7", " 7", "7 "] {
            assert_eq!(
                refused_claim(map.caller(&json!({"user_id": spelled_otherwise}))),
                "user_id",
                "{spelled_otherwise}"
            );
        }
    }

    #[test]
    fn numeric_roles_must_be_within_range() {
        let map = mapping();
        assert_eq!(map.caller(&json!({"user_id": 1, "role_level": "100"})).expect("caller"), Caller::user(1, 100));
        for bad in [json!(101), json!(-1), json!("admin"), json!([100])] {
            let claims = json!({"user_id": 1, "role_level": bad});
            assert_eq!(refused_claim(map.caller(&claims)), "role_level", "{claims}");
        }
    }

    #[test]
    fn list_roles_map_to_the_highest_level() {
        let map = keycloak();
        let token = |roles: Value| json!({"sub": "9", "realm_access": {"roles": roles}});
        assert_eq!(
            map.caller(&token(json!(["offline_access", "economy-staff"]))).expect("caller"),
            Caller::user(9, 50)
        );
        assert_eq!(
            map.caller(&token(json!(["economy-staff", "economy-admin"]))).expect("caller"),
            Caller::user(9, 100)
        );
        assert_eq!(map.caller(&token(json!(["offline_access"]))).expect("caller"), Caller::user(9, 0));
        assert_eq!(map.caller(&token(json!("economy-admin"))).expect("caller"), Caller::user(9, 100));
        assert_eq!(map.caller(&json!({"sub": 9})).expect("caller"), Caller::user(9, 0));
    }

    #[test]
    fn a_top_level_key_wins_over_a_dotted_path() {
        let claims = json!({"https://example.com/roles": ["economy-admin"], "sub": 3});
        let map = ClaimMapping { role_list_claim: "https://example.com/roles".into(), ..keycloak() };
        assert_eq!(map.caller(&claims).expect("caller"), Caller::user(3, 100));
    }

    #[test]
    fn a_mapping_outside_the_role_range_is_refused() {
        let mut map = keycloak();
        map.role_map.insert("root".into(), 1000);
        let message = map.check().expect_err("refused").to_string();
        assert!(message.contains("gateway.auth.role_map.root"), "{message}");
        assert!(keycloak().check().is_ok());
    }
}
