//! Ledger calls: holds (escrow of listed assets, of item purchases and of offer
//! payments), the purchase transaction of an asset listing, the closing entry of an
//! exchange, and the asset catalog.

use economy_kit::identity::Signer;
use economy_proto::ledger::v1 as pb;
use pb::account_ref::Account;
use pb::ledger_service_client::LedgerServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::CallError;

/// Business type of every entry of a listing's trade in the journal.
pub const MARKET_TRADE: &str = "MARKET_TRADE";

/// The ledger, as the market.
#[derive(Debug, Clone)]
pub struct Ledger(LedgerServiceClient<InterceptedService<Channel, Signer>>);

/// A user's account.
pub fn user(user_id: i64) -> pb::AccountRef {
    pb::AccountRef { account: Some(Account::UserId(user_id)) }
}

/// A system account.
pub fn system(name: &str) -> pb::AccountRef {
    pb::AccountRef { account: Some(Account::System(name.to_owned())) }
}

/// One available-bucket leg.
pub fn leg(account: pb::AccountRef, asset: &str, amount: i64) -> pb::PostingInput {
    pb::PostingInput { account: Some(account), asset_code: asset.to_owned(), amount }
}

fn refused(status: tonic::Status) -> CallError {
    CallError::from_status("ledger", &status)
}

impl Ledger {
    /// Over `channel`, signing with `signer`.
    pub fn new(channel: Channel, signer: Signer) -> Self {
        Self(LedgerServiceClient::with_interceptor(channel, signer))
    }

    /// Freezes `amount` of `user_id`'s `asset`; returns `(hold id, transaction id)`.
    pub async fn create_hold(
        &self,
        key: &str,
        user_id: i64,
        asset: &str,
        amount: i64,
        reference: &str,
    ) -> Result<(String, String), CallError> {
        let request = pb::CreateHoldRequest {
            idempotency_key: key.to_owned(),
            account: Some(user(user_id)),
            asset_code: asset.to_owned(),
            amount,
            expires_at: None,
            reference: reference.to_owned(),
        };
        let response = self.0.clone().create_hold(request).await.map_err(refused)?.into_inner();
        let hold = response.hold.map(|hold| hold.id).unwrap_or_default();
        Ok((hold, response.transaction.map(|entry| entry.id).unwrap_or_default()))
    }

    /// Releases a hold; returns the transaction id.
    pub async fn release_hold(&self, key: &str, hold_id: &str) -> Result<String, CallError> {
        let request = pb::ReleaseHoldRequest {
            idempotency_key: key.to_owned(),
            hold_id: hold_id.to_owned(),
            reason: "market".to_owned(),
        };
        let response = self.0.clone().release_hold(request).await.map_err(refused)?.into_inner();
        Ok(response.transaction.map(|entry| entry.id).unwrap_or_default())
    }

    /// Pays a whole hold out to `destinations`; returns the transaction id.
    pub async fn settle_hold(
        &self,
        key: &str,
        hold_id: &str,
        destinations: Vec<pb::PostingInput>,
        correlation_id: &str,
    ) -> Result<String, CallError> {
        let request = pb::SettleHoldRequest {
            idempotency_key: key.to_owned(),
            hold_id: hold_id.to_owned(),
            amount: None,
            destinations,
            business_type: MARKET_TRADE.to_owned(),
            correlation_id: correlation_id.to_owned(),
        };
        let response = self.0.clone().settle_hold(request).await.map_err(refused)?.into_inner();
        Ok(response.transaction.map(|entry| entry.id).unwrap_or_default())
    }

    /// Posts one journal entry of `postings` settling every hold of `hold_ids` wholly,
    /// recorded with `business_type` and `correlation_id`; returns its id.
    pub async fn post_entry(
        &self,
        key: &str,
        postings: Vec<pb::PostingInput>,
        hold_ids: &[String],
        business_type: &str,
        correlation_id: &str,
    ) -> Result<String, CallError> {
        let hold_settlements =
            hold_ids.iter().map(|hold_id| pb::HoldSettlement { hold_id: hold_id.clone(), amount: None }).collect();
        let request = pb::PostTransactionRequest {
            idempotency_key: key.to_owned(),
            business_type: business_type.to_owned(),
            correlation_id: correlation_id.to_owned(),
            memo: String::new(),
            postings,
            hold_settlements,
        };
        let response = self.0.clone().post_transaction(request).await.map_err(refused)?.into_inner();
        Ok(response.transaction.map(|entry| entry.id).unwrap_or_default())
    }

    /// The codes of the asset catalog.
    pub async fn asset_codes(&self) -> Result<Vec<String>, CallError> {
        let response = self.0.clone().list_assets(pb::ListAssetsRequest {}).await.map_err(refused)?.into_inner();
        Ok(response.assets.into_iter().map(|asset| asset.code).collect())
    }

    /// The resulting balances `transaction_id` recorded for `user_id`'s account
    /// (docs/ledger.md, "Resulting balances").
    pub async fn balances_after(&self, transaction_id: &str, user_id: i64) -> Result<Vec<pb::Balance>, CallError> {
        let request = pb::GetTransactionRequest { id: transaction_id.to_owned() };
        let entry = self.0.clone().get_transaction(request).await.map_err(refused)?.into_inner().transaction;
        let account = Some(user(user_id));
        let balances = entry.map(|entry| entry.resulting_balances).unwrap_or_default();
        Ok(balances.into_iter().filter(|balance| balance.account == account).collect())
    }
}
