//! Holds (docs/ledger.md, "Holds"): an amount moved from available to frozen under a hold id,
//! then resolved exactly once — settled (all or part, the rest released), released, or
//! expired by the background job.
//!
//! A hold with an expiry is expired from its `expires_at` on, whenever the job runs: from
//! that instant no write may pay it out (`HOLD_EXPIRED`), on every write path, since they
//! all resolve holds through [`Resolution::resolve`]. The job only records what already
//! holds (status `expired`, the amount back to available). A release past the expiry is
//! still accepted: it returns the amount to available, exactly what the expiry does, so
//! the holder's money ends in the same place whichever comes first.

use super::LedgerError;
use super::entry::{Bucket, Leg};
use super::ids::{AccountId, Amount, AssetCode, HoldId};

/// State of a hold; every state but `Open` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    /// Frozen, unresolved.
    Open,
    /// Paid out (all or part; the rest released).
    Settled,
    /// Returned to available.
    Released,
    /// Returned to available by the expiry job.
    Expired,
}

impl HoldStatus {
    /// Storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Settled => "settled",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Open, Self::Settled, Self::Released, Self::Expired].into_iter().find(|status| status.as_str() == value)
    }
}

/// A hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// UUIDv7.
    pub id: HoldId,
    /// The user account frozen.
    pub account: AccountId,
    /// The asset.
    pub asset: AssetCode,
    /// Amount frozen.
    pub amount: i64,
    /// Amount paid out by the settlement (0 unless settled).
    pub settled_amount: i64,
    /// State.
    pub status: HoldStatus,
    /// Caller's reference.
    pub reference: String,
    /// Expiry, ms since the epoch.
    pub expires_at: Option<i64>,
    /// Creation, ms since the epoch.
    pub created_at: i64,
    /// Resolution, ms since the epoch.
    pub resolved_at: Option<i64>,
}

impl Hold {
    /// True when the hold has an expiry and `now` (ms since the epoch) is at or past it:
    /// from then on it can no longer be paid out.
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|expires_at| expires_at <= now)
    }
}

/// How a hold is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Pay out `amount` (the whole hold when `None`), release the rest.
    Settle(Option<Amount>),
    /// Return everything to available (operator or service).
    Release,
    /// Return everything to available (expiry job).
    Expire,
}

impl Resolution {
    /// The final status this resolution leads to.
    pub fn status(self) -> HoldStatus {
        match self {
            Self::Settle(_) => HoldStatus::Settled,
            Self::Release => HoldStatus::Released,
            Self::Expire => HoldStatus::Expired,
        }
    }

    /// Resolves `hold`, whose status is `status` (as stored, or as an earlier entry of the
    /// same batch left it), at `now` (ms since the epoch): the amount paid out and the legs
    /// that empty the hold (every write path's rule). `HOLD_ALREADY_RESOLVED` unless open,
    /// `HOLD_EXPIRED` for a settlement at or past the hold's expiry (even before the expiry
    /// job ran; a release or an expiry is accepted), `HOLD_AMOUNT_EXCEEDED`.
    pub fn resolve(self, hold: &Hold, status: HoldStatus, now: i64) -> Result<(i64, Vec<Leg>), LedgerError> {
        if status != HoldStatus::Open {
            return Err(LedgerError::HoldAlreadyResolved { hold_id: hold.id.to_string(), status: status.as_str() });
        }
        if let (Self::Settle(_), Some(expires_at)) = (self, hold.expires_at)
            && expires_at <= now
        {
            return Err(LedgerError::HoldExpired { hold_id: hold.id.to_string(), expires_at });
        }
        let settled = self.settled_amount(&hold.id, hold.amount)?;
        Ok((settled, resolution_legs(hold, settled)))
    }

    /// Amount paid out of a hold of `hold_amount`; `HOLD_AMOUNT_EXCEEDED` if more.
    pub fn settled_amount(self, hold_id: &HoldId, hold_amount: i64) -> Result<i64, LedgerError> {
        match self {
            Self::Settle(None) => Ok(hold_amount),
            Self::Settle(Some(amount)) if amount.get() <= hold_amount => Ok(amount.get()),
            Self::Settle(Some(amount)) => Err(LedgerError::HoldAmountExceeded {
                hold_id: hold_id.to_string(),
                amount: hold_amount,
                requested: amount.get(),
            }),
            Self::Release | Self::Expire => Ok(0),
        }
    }
}

/// A hold an entry resolves: how, and the amount paid out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The hold.
    pub id: HoldId,
    /// How it is resolved.
    pub resolution: Resolution,
    /// Amount paid out of it (0 unless settled).
    pub settled: i64,
}

/// Resolves the holds of one entry in order (docs/ledger.md, "Holds": each exactly once) at
/// `now` (ms since the epoch), every write path's rule: `hold` gives each hold as it
/// stands (stored, or as an earlier entry of the same batch left it). Returns the legs
/// that empty the holds and each resolution with its payout. Errors: whatever `hold`
/// returns (`HOLD_NOT_FOUND`), `HOLD_ALREADY_RESOLVED` (not open, or named twice by the
/// entry), `HOLD_EXPIRED`, `HOLD_AMOUNT_EXCEEDED`.
pub fn resolve_all<'h>(
    resolutions: &[(HoldId, Resolution)],
    now: i64,
    mut hold: impl FnMut(&HoldId) -> Result<&'h Hold, LedgerError>,
) -> Result<(Vec<Leg>, Vec<Resolved>), LedgerError> {
    let mut legs = Vec::new();
    let mut resolved: Vec<Resolved> = Vec::new();
    for (id, resolution) in resolutions {
        let current = hold(id)?;
        let earlier = resolved.iter().find(|earlier| earlier.id == *id).map(|earlier| earlier.resolution.status());
        let (settled, hold_legs) = resolution.resolve(current, earlier.unwrap_or(current.status), now)?;
        legs.extend(hold_legs);
        resolved.push(Resolved { id: id.clone(), resolution: *resolution, settled });
    }
    Ok((legs, resolved))
}

/// Legs that freeze `amount`: available -amount, frozen +amount.
pub fn freeze_legs(hold_id: &HoldId, account: &AccountId, asset: &AssetCode, amount: Amount) -> Vec<Leg> {
    let leg = |bucket, amount| Leg {
        account: account.clone(),
        asset: asset.clone(),
        bucket,
        amount,
        hold_id: Some(hold_id.clone()),
    };
    vec![leg(Bucket::Available, -amount.get()), leg(Bucket::Frozen, amount.get())]
}

/// Legs that resolve `hold`, paying out `settled` (the caller adds the destinations):
/// frozen -amount, and available +(amount - settled) for the released rest.
pub fn resolution_legs(hold: &Hold, settled: i64) -> Vec<Leg> {
    let leg = |bucket, amount| Leg {
        account: hold.account.clone(),
        asset: hold.asset.clone(),
        bucket,
        amount,
        hold_id: Some(hold.id.clone()),
    };
    let mut legs = vec![leg(Bucket::Frozen, -hold.amount)];
    if hold.amount > settled {
        legs.push(leg(Bucket::Available, hold.amount - settled));
    }
    legs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entry::{balance_deltas, check_balanced};
    use crate::domain::ids::{Code, UserId};

    fn hold(amount: i64) -> Hold {
        Hold {
            id: HoldId::generate(),
            account: AccountId::User(UserId::parse(1).expect("id")),
            asset: Code::parse("GOLD").expect("code"),
            amount,
            settled_amount: 0,
            status: HoldStatus::Open,
            reference: String::new(),
            expires_at: None,
            created_at: 0,
            resolved_at: None,
        }
    }

    #[test]
    fn freeze_moves_available_to_frozen() -> Result<(), LedgerError> {
        let hold = hold(10);
        let legs = freeze_legs(&hold.id, &hold.account, &hold.asset, Amount::parse(10).expect("amount"));
        check_balanced(&legs)?;
        let delta = &balance_deltas(&legs)?[0];
        assert_eq!((delta.available, delta.frozen), (-10, 10));
        Ok(())
    }

    #[test]
    fn partial_settlement_releases_the_rest() -> Result<(), LedgerError> {
        let hold = hold(10);
        let settle = Resolution::Settle(Some(Amount::parse(4).expect("amount")));
        let settled = settle.settled_amount(&hold.id, hold.amount)?;
        let legs = resolution_legs(&hold, settled);
        let delta = &balance_deltas(&legs)?[0];
        assert_eq!((settled, delta.available, delta.frozen), (4, 6, -10));
        Ok(())
    }

    #[test]
    fn release_returns_everything_and_over_settlement_fails() {
        let hold = hold(10);
        assert_eq!(Resolution::Release.settled_amount(&hold.id, 10), Ok(0));
        assert_eq!(resolution_legs(&hold, 0).iter().map(|leg| leg.amount).sum::<i64>(), 0);
        let too_much = Resolution::Settle(Some(Amount::parse(11).expect("amount")));
        assert!(matches!(too_much.settled_amount(&hold.id, 10), Err(LedgerError::HoldAmountExceeded { .. })));
    }

    #[test]
    fn only_an_open_hold_resolves() -> Result<(), LedgerError> {
        let hold = hold(10);
        let (settled, legs) = Resolution::Release.resolve(&hold, HoldStatus::Open, 0)?;
        assert_eq!((settled, legs), (0, resolution_legs(&hold, 0)));
        let again = Resolution::Release.resolve(&hold, HoldStatus::Released, 0);
        assert!(matches!(again, Err(LedgerError::HoldAlreadyResolved { status: "released", .. })), "{again:?}");
        let too_much = Resolution::Settle(Some(Amount::parse(11).expect("amount"))).resolve(&hold, HoldStatus::Open, 0);
        assert!(matches!(too_much, Err(LedgerError::HoldAmountExceeded { .. })), "{too_much:?}");
        Ok(())
    }

    #[test]
    fn an_entry_resolves_each_hold_once() -> Result<(), LedgerError> {
        let (first, second) = (hold(10), hold(4));
        let holds = [&first, &second];
        let find = |id: &HoldId| {
            holds.iter().copied().find(|hold| hold.id == *id).ok_or_else(|| LedgerError::HoldNotFound(id.to_string()))
        };
        let settle = Resolution::Settle(Some(Amount::parse(3).expect("amount")));
        let both = [(first.id.clone(), settle), (second.id.clone(), Resolution::Release)];
        let (legs, resolved) = resolve_all(&both, 0, find)?;
        let expected: Vec<Leg> = [resolution_legs(&first, 3), resolution_legs(&second, 0)].concat();
        assert_eq!(legs, expected);
        assert_eq!(resolved.iter().map(|done| done.settled).collect::<Vec<_>>(), vec![3, 0]);
        let twice = resolve_all(&[(first.id.clone(), settle), (first.id.clone(), Resolution::Release)], 0, find);
        assert!(matches!(twice, Err(LedgerError::HoldAlreadyResolved { status: "settled", .. })), "{twice:?}");
        let missing = resolve_all(&[(HoldId::generate(), Resolution::Release)], 0, find);
        assert!(matches!(missing, Err(LedgerError::HoldNotFound(_))), "{missing:?}");
        Ok(())
    }

    #[test]
    fn a_hold_is_not_paid_out_from_its_expiry_on() -> Result<(), LedgerError> {
        let forever = hold(10);
        let hold = Hold { expires_at: Some(100), ..forever.clone() };
        let settle = Resolution::Settle(None);
        assert_eq!(settle.resolve(&hold, HoldStatus::Open, 99)?.0, 10, "before the expiry");
        for now in [100, 101, i64::MAX] {
            let late = settle.resolve(&hold, HoldStatus::Open, now);
            assert!(matches!(late, Err(LedgerError::HoldExpired { expires_at: 100, .. })), "{late:?}");
            assert_eq!(Resolution::Release.resolve(&hold, HoldStatus::Open, now)?, (0, resolution_legs(&hold, 0)));
            assert_eq!(Resolution::Expire.resolve(&hold, HoldStatus::Open, now)?.0, 0);
        }
        let resolved = settle.resolve(&hold, HoldStatus::Expired, 100);
        assert!(matches!(resolved, Err(LedgerError::HoldAlreadyResolved { status: "expired", .. })), "{resolved:?}");
        assert_eq!(settle.resolve(&forever, HoldStatus::Open, i64::MAX)?.0, 10, "no expiry");
        Ok(())
    }

    #[test]
    fn status_spellings_round_trip() {
        for status in [HoldStatus::Open, HoldStatus::Settled, HoldStatus::Released, HoldStatus::Expired] {
            assert_eq!(HoldStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(HoldStatus::parse("x"), None);
    }
}
