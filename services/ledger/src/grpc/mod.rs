//! gRPC adapter of `economy.ledger.v1.LedgerService`: each handler authorizes the signed
//! caller, converts the request, calls the domain and store, and converts back.

mod compensation;
mod convert;
mod error;
mod import;
mod requests;
mod watch;

use std::time::Duration;

use economy_kit::audit;
use economy_kit::error::Violations;
use economy_kit::identity::{Caller, caller, idempotency_key};
use economy_kit::job_runs::{self, JobRuns};
use economy_kit::time::SharedClock;
pub use economy_kit::watch::WatchOptions;
use economy_proto::ledger::v1 as pb;
use pb::ledger_service_server::LedgerService;
use tonic::{Request, Response, Status};

use crate::domain::LedgerError;
use crate::domain::ids::AccountId;
use crate::store::{Applied, LedgerStore, ReconcileLimits};

/// `ErrorInfo.domain` of every ledger error.
pub const DOMAIN: &str = "economy.ledger";

/// The service implementation.
#[derive(Debug, Clone)]
pub struct LedgerApi {
    store: LedgerStore,
    clock: SharedClock,
    watch: WatchOptions,
    /// The whole check's chunk sizes and a call's time budget.
    whole_check: (ReconcileLimits, Duration),
}

impl LedgerApi {
    /// Serves `store`; `clock` is the "now" that expiries are checked against; `watch`
    /// sets the entry streams. The whole check runs with the default chunks and a 10 s
    /// budget per call unless [`LedgerApi::with_whole_check`] says otherwise.
    pub fn new(store: LedgerStore, clock: SharedClock, watch: WatchOptions) -> Self {
        Self { store, clock, watch, whole_check: (ReconcileLimits::default(), Duration::from_secs(10)) }
    }

    /// The whole check's chunk sizes and the time a `Reconcile` call runs before it
    /// answers with a cursor (docs/ledger.md, "Reconciliation").
    pub fn with_whole_check(mut self, limits: ReconcileLimits, call_budget: Duration) -> Self {
        self.whole_check = (limits, call_budget);
        self
    }
}

fn deny(what: &str) -> Status {
    LedgerError::PermissionDenied(format!("caller may not {what}")).into()
}

fn require(allowed: bool, what: &str) -> Result<(), Status> {
    if allowed { Ok(()) } else { Err(deny(what)) }
}

/// A user reads their own account; admins and services read any.
fn may_read(caller: &Caller, account: &AccountId) -> bool {
    match account.user() {
        Some(user) => caller.may_act_for(user.get()),
        None => caller.is_privileged(),
    }
}

fn validated<T>(violations: Violations, value: Option<T>) -> Result<T, Status> {
    violations.finish(DOMAIN)?;
    value.ok_or_else(|| Status::internal("validated value missing"))
}

fn entry_response(applied: &Applied) -> (Option<pb::Transaction>, bool) {
    (Some(convert::transaction(&applied.entry)), applied.replayed)
}

#[tonic::async_trait]
impl LedgerService for LedgerApi {
    async fn define_asset(
        &self,
        request: Request<pb::DefineAssetRequest>,
    ) -> Result<Response<pb::DefineAssetResponse>, Status> {
        require(caller(&request)?.is_admin(), "define assets")?;
        let asset = requests::asset(request.get_ref())?;
        let (stored, created) = self.store.define_asset(&asset).await?;
        Ok(Response::new(pb::DefineAssetResponse { asset: Some(convert::asset(&stored)), created }))
    }

    async fn list_assets(
        &self,
        request: Request<pb::ListAssetsRequest>,
    ) -> Result<Response<pb::ListAssetsResponse>, Status> {
        caller(&request)?;
        let assets = self.store.assets().await?;
        Ok(Response::new(pb::ListAssetsResponse { assets: assets.iter().map(convert::asset).collect() }))
    }

    async fn define_conversion_rule(
        &self,
        request: Request<pb::DefineConversionRuleRequest>,
    ) -> Result<Response<pb::DefineConversionRuleResponse>, Status> {
        require(caller(&request)?.is_admin(), "define conversion rules")?;
        let rule = requests::rule(request.get_ref())?;
        let stored = self.store.define_rule(&rule).await?;
        Ok(Response::new(pb::DefineConversionRuleResponse { rule: Some(convert::rule(&stored)) }))
    }

    async fn list_conversion_rules(
        &self,
        request: Request<pb::ListConversionRulesRequest>,
    ) -> Result<Response<pb::ListConversionRulesResponse>, Status> {
        caller(&request)?;
        let rules = self.store.rules().await?;
        Ok(Response::new(pb::ListConversionRulesResponse { rules: rules.iter().map(convert::rule).collect() }))
    }

    async fn adjust_balance(
        &self,
        request: Request<pb::AdjustBalanceRequest>,
    ) -> Result<Response<pb::AdjustBalanceResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_admin(), "adjust balances")?;
        let plan = requests::adjust(
            request.get_ref(),
            &idempotency_key(&request, &request.get_ref().idempotency_key),
            &caller.actor(),
        )?;
        let (transaction, replayed) = entry_response(&self.store.apply(&plan).await?);
        Ok(Response::new(pb::AdjustBalanceResponse { transaction, replayed }))
    }

    async fn post_transaction(
        &self,
        request: Request<pb::PostTransactionRequest>,
    ) -> Result<Response<pb::PostTransactionResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_privileged(), "post transactions")?;
        let plan = requests::post(
            request.get_ref(),
            &idempotency_key(&request, &request.get_ref().idempotency_key),
            &caller.actor(),
        )?;
        let (transaction, replayed) = entry_response(&self.store.apply(&plan).await?);
        Ok(Response::new(pb::PostTransactionResponse { transaction, replayed }))
    }

    async fn create_hold(
        &self,
        request: Request<pb::CreateHoldRequest>,
    ) -> Result<Response<pb::CreateHoldResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_privileged(), "create holds")?;
        let plan = requests::create_hold(
            request.get_ref(),
            &idempotency_key(&request, &request.get_ref().idempotency_key),
            &caller.actor(),
        )?;
        // A retry answers from its key even once the expiry has passed; only a first
        // request is held to the clock.
        let applied = match requests::expires_in_the_past(&plan, self.clock.now_millis()) {
            Some(refusal) => self.store.replay(&plan.meta).await?.ok_or(refusal)?,
            None => self.store.apply(&plan).await?,
        };
        let (hold, transaction, replayed) = self.hold_response(&applied).await?;
        Ok(Response::new(pb::CreateHoldResponse { hold, transaction, replayed }))
    }

    async fn settle_hold(
        &self,
        request: Request<pb::SettleHoldRequest>,
    ) -> Result<Response<pb::SettleHoldResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_privileged(), "settle holds")?;
        let plan = requests::settle_hold(
            request.get_ref(),
            &idempotency_key(&request, &request.get_ref().idempotency_key),
            &caller.actor(),
        )?;
        let (hold, transaction, replayed) = self.hold_response(&self.store.apply(&plan).await?).await?;
        Ok(Response::new(pb::SettleHoldResponse { hold, transaction, replayed }))
    }

    async fn release_hold(
        &self,
        request: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<pb::ReleaseHoldResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_privileged(), "release holds")?;
        let plan = requests::release_hold(
            request.get_ref(),
            &idempotency_key(&request, &request.get_ref().idempotency_key),
            &caller.actor(),
        )?;
        let (hold, transaction, replayed) = self.hold_response(&self.store.apply(&plan).await?).await?;
        Ok(Response::new(pb::ReleaseHoldResponse { hold, transaction, replayed }))
    }

    async fn convert_asset(
        &self,
        request: Request<pb::ConvertAssetRequest>,
    ) -> Result<Response<pb::ConvertAssetResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.may_act_for(request.get_ref().user_id), "convert another user's assets")?;
        let (command, key) =
            requests::convert(request.get_ref(), &idempotency_key(&request, &request.get_ref().idempotency_key))?;
        let actor = caller.actor();
        let planned = match self.store.rule(command.rule.as_str()).await {
            Ok(rule) => command.clone().plan(&rule, key.clone(), &actor),
            Err(error) => Err(error),
        };
        let applied = match planned {
            Ok(plan) => self.store.apply(&plan).await?,
            // The rule is current state (disabled or changed since): a retry answers from
            // its key first, only a first request is refused by the rule.
            Err(refusal) => self.store.replay(&command.meta(key, &actor)).await?.ok_or(refusal)?,
        };
        let (transaction, replayed) = entry_response(&applied);
        Ok(Response::new(pb::ConvertAssetResponse { transaction, replayed }))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let account = convert::account(&mut violations, "account", request.get_ref().account.as_ref());
        let asset = convert::code(&mut violations, "asset_code", &request.get_ref().asset_code);
        let (account, asset) = validated(violations, account.zip(asset))?;
        require(may_read(&caller, &account), "read this account")?;
        let (available, frozen) = match requests::as_of(request.get_ref().as_of.as_ref())? {
            Some(at) => {
                let balance = self.store.balance_as_of(&account, asset.as_str(), at).await?;
                (balance.available, balance.frozen)
            }
            None => self.store.balance(&account, asset.as_str()).await?,
        };
        Ok(Response::new(pb::GetBalanceResponse {
            balance: Some(convert::balance(&account, asset.to_string(), available, frozen)),
        }))
    }

    async fn list_balances(
        &self,
        request: Request<pb::ListBalancesRequest>,
    ) -> Result<Response<pb::ListBalancesResponse>, Status> {
        let caller = caller(&request)?;
        let account = requests::readable_account(&caller, request.get_ref().account.as_ref())?;
        let balances = match requests::as_of(request.get_ref().as_of.as_ref())? {
            Some(at) => self.store.balances_as_of(&account, at).await?,
            None => self.store.balances(&account).await?,
        };
        let balances = balances
            .into_iter()
            .map(|(asset, available, frozen)| convert::balance(&account, asset, available, frozen))
            .collect();
        Ok(Response::new(pb::ListBalancesResponse { balances }))
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let id = convert::entity_id(&mut violations, "id", &request.get_ref().id);
        let id = validated(violations, id)?;
        let entry = self.store.entry(id.as_str()).await?;
        let involved = entry.legs.iter().any(|leg| may_read(&caller, &leg.account) && leg.account.user().is_some());
        if !(caller.is_privileged() || involved) {
            return Err(LedgerError::TransactionNotFound(id.to_string()).into());
        }
        Ok(Response::new(pb::GetTransactionResponse { transaction: Some(convert::transaction(&entry)) }))
    }

    async fn get_statement(
        &self,
        request: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::GetStatementResponse>, Status> {
        let caller = caller(&request)?;
        let query = requests::statement(&caller, request.get_ref())?;
        let statement = self.store.statement(&query).await?;
        Ok(Response::new(convert::statement(&query, &statement)))
    }

    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let caller = caller(&request)?;
        let (filter, page) = requests::transaction_listing(&caller, request.get_ref())?;
        let entries = self.store.entries_matching(&filter, &page).await?;
        let next_page_token = convert::next_page_token(entries.iter().map(|entry| entry.id.as_str()), page.limit);
        Ok(Response::new(pb::ListTransactionsResponse {
            transactions: entries.iter().map(convert::transaction).collect(),
            next_page_token,
        }))
    }

    type WatchEntriesStream = watch::EntryStream;

    async fn watch_entries(
        &self,
        request: Request<pb::WatchEntriesRequest>,
    ) -> Result<Response<Self::WatchEntriesStream>, Status> {
        let caller = caller(&request)?;
        let (filter, start) = requests::entry_watch(&caller, request.get_ref())?;
        let stream = watch::open(self.store.clone(), filter, start, &self.watch).await?;
        Ok(Response::new(stream))
    }

    async fn get_hold(&self, request: Request<pb::GetHoldRequest>) -> Result<Response<pb::GetHoldResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let id = convert::entity_id(&mut violations, "hold_id", &request.get_ref().hold_id);
        let id = validated(violations, id)?;
        let not_found = || Status::from(LedgerError::HoldNotFound(id.to_string()));
        let hold = self.store.hold(id.as_str()).await?.ok_or_else(not_found)?;
        if !may_read(&caller, &hold.account) {
            return Err(not_found());
        }
        Ok(Response::new(pb::GetHoldResponse { hold: Some(convert::hold(&hold)) }))
    }

    async fn list_holds(
        &self,
        request: Request<pb::ListHoldsRequest>,
    ) -> Result<Response<pb::ListHoldsResponse>, Status> {
        let caller = caller(&request)?;
        let (filter, page) = requests::hold_listing(&caller, request.get_ref())?;
        let holds = self.store.holds(&filter, &page).await?;
        let next_page_token = convert::next_page_token(holds.iter().map(|hold| hold.id.as_str()), page.limit);
        Ok(Response::new(pb::ListHoldsResponse { holds: holds.iter().map(convert::hold).collect(), next_page_token }))
    }

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        require(caller(&request)?.is_admin(), "reconcile")?;
        let response = if request.get_ref().since_checkpoint {
            convert::increment(self.store.reconcile_increment().await?)
        } else {
            let from = requests::reconcile_position(request.get_ref())?;
            let (limits, budget) = &self.whole_check;
            let (report, next) = self.store.reconcile(from, limits, *budget).await?;
            convert::report(report, next.as_ref())
        };
        if !response.findings.is_empty() {
            tracing::warn!(findings = response.findings.len(), "ledger reconciliation found violations");
        }
        Ok(Response::new(response))
    }

    async fn recalculate_balance(
        &self,
        request: Request<pb::RecalculateBalanceRequest>,
    ) -> Result<Response<pb::RecalculateBalanceResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_admin(), "recalculate balances")?;
        let key = idempotency_key(&request, &request.get_ref().idempotency_key);
        let (command, draft) = compensation::recalculate(request.get_ref(), &key, &caller.actor())?;
        let fixed = self.store.recalculate_balance(&command, &draft).await?;
        log_fix(&fixed.record, fixed.replayed);
        let (available, frozen) = fixed.balance;
        Ok(Response::new(pb::RecalculateBalanceResponse {
            balance: Some(convert::balance(&command.account, command.asset.to_string(), available, frozen)),
            audit_record: Some(audit::to_proto(&fixed.record)),
            replayed: fixed.replayed,
        }))
    }

    async fn force_release_hold(
        &self,
        request: Request<pb::ForceReleaseHoldRequest>,
    ) -> Result<Response<pb::ForceReleaseHoldResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_admin(), "force-release holds")?;
        let key = idempotency_key(&request, &request.get_ref().idempotency_key);
        let (plan, draft) = compensation::force_release(request.get_ref(), &key, &caller.actor())?;
        let released = self.store.force_release_hold(&plan, &draft).await?;
        log_fix(&released.record, released.applied.replayed);
        let (transaction, replayed) = entry_response(&released.applied);
        Ok(Response::new(pb::ForceReleaseHoldResponse {
            hold: Some(convert::hold(&released.hold)),
            transaction,
            audit_record: Some(audit::to_proto(&released.record)),
            replayed,
        }))
    }

    async fn list_job_runs(
        &self,
        request: Request<pb::ListJobRunsRequest>,
    ) -> Result<Response<pb::ListJobRunsResponse>, Status> {
        require(caller(&request)?.is_admin(), "read job runs")?;
        let request = request.get_ref();
        let runs = JobRuns::new(self.store.db().clone());
        let (runs, next_page_token) =
            job_runs::answer(&runs, DOMAIN, &request.job, request.page_size, &request.page_token).await?;
        Ok(Response::new(pb::ListJobRunsResponse { runs, next_page_token }))
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        require(caller(&request)?.is_admin(), "read audit records")?;
        let query = compensation::audit_query(request.get_ref())?;
        let page = self.store.audit_records(&query).await?;
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records: page.records.iter().map(audit::to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn import_balances(
        &self,
        request: Request<pb::ImportBalancesRequest>,
    ) -> Result<Response<pb::ImportBalancesResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_admin(), "import balances")?;
        Ok(Response::new(import::import_balances(&self.store, request.get_ref(), &caller.actor()).await?))
    }
}

/// Logs an applied compensation tool (nothing for a replay).
fn log_fix(record: &audit::AuditRecord, replayed: bool) {
    if !replayed {
        record.log_applied();
    }
}

impl LedgerApi {
    /// The answer of a hold write: the hold (current state), the entry and `replayed`.
    async fn hold_response(
        &self,
        applied: &Applied,
    ) -> Result<(Option<pb::Hold>, Option<pb::Transaction>, bool), Status> {
        let hold = match applied.entry.hold_id() {
            Some(hold_id) => self.store.hold(hold_id.as_str()).await?.as_ref().map(convert::hold),
            None => None,
        };
        let (transaction, replayed) = entry_response(applied);
        Ok((hold, transaction, replayed))
    }
}
