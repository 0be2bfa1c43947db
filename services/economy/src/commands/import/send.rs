//! Sending the checked rows through the gateway (docs/import.md, "How rows are written"):
//! the catalogs with DefineAsset and DefineTemplate, then batches of ImportBalances
//! (each balance one journal entry: business type `IMPORT`, SYSTEM_ISSUANCE to the user,
//! key `import:balance:<external id>`), ImportItems and ImportOrders. Every row is idempotent on its own, so a transient failure is retried
//! and an interrupted run is resumed by running it again.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_proto::redemption::v1 as redemption;
use items::item_service_client::ItemServiceClient;
use ledger::ledger_service_client::LedgerServiceClient;
use redemption::redemption_service_client::RedemptionServiceClient;
use tokio::task::JoinSet;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::check::{Item, LOCKED, Order, Plan};
use super::format::{self, BadRow, Line};
use super::report::Totals;

/// Rows per ImportBalances / ImportItems / ImportOrders call: each service writes a
/// call's new rows in one transaction (docs/import.md, "Speed").
const BATCH: usize = 500;
/// Import calls in flight.
const BATCHES_IN_FLIGHT: usize = 4;
/// Attempts at a call that failed transiently.
const ATTEMPTS: u32 = 6;

/// Adds the bearer token and a fresh `idempotency-key` to every call: the gateway's
/// record of a call is only a transport retry guard here; each row carries its own key.
#[derive(Debug, Clone)]
pub struct Auth(pub tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        let key = uuid::Uuid::now_v7().to_string();
        let key = key.parse().map_err(|_| Status::internal("idempotency key"))?;
        request.metadata_mut().insert("idempotency-key", key);
        Ok(request)
    }
}

type Channelled = InterceptedService<Channel, Auth>;

/// The three services, through the gateway.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Ledger.
    pub ledger: LedgerServiceClient<Channelled>,
    /// Items.
    pub items: ItemServiceClient<Channelled>,
    /// Redemption.
    pub redemption: RedemptionServiceClient<Channelled>,
}

/// What the services confirmed, and the rows they refused.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The confirmed side of the report.
    pub imported: Totals,
    /// Refused rows.
    pub bad: Vec<BadRow>,
    /// Rows created now / found unchanged, per file.
    pub counts: HashMap<&'static str, (u64, u64)>,
    /// Wall time of each bulk file's calls, in import order.
    pub timings: Vec<(&'static str, Duration)>,
}

impl Outcome {
    fn count(&mut self, file: &'static str, created: bool) {
        let entry = self.counts.entry(file).or_default();
        if created { entry.0 += 1 } else { entry.1 += 1 }
    }

    fn refuse(&mut self, file: &'static str, line: usize, reason: &str, message: &str) {
        self.bad.push(BadRow { file, line, reason: reason.to_owned(), message: message.to_owned() });
    }
}

fn transient(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted)
}

/// `call` until it answers something other than a transient failure (at most `ATTEMPTS`).
async fn retried<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut delay = Duration::from_millis(200);
    for _ in 1..ATTEMPTS {
        match call().await {
            Err(status) if transient(&status) => tokio::time::sleep(delay).await,
            other => return other.map(tonic::Response::into_inner),
        }
        delay *= 2;
    }
    call().await.map(tonic::Response::into_inner)
}

/// `call(client, request)` on owned copies: one fresh future per attempt.
fn owned<C, R, F, Fut>(client: C, request: R, call: F) -> Fut
where
    F: FnOnce(C, R) -> Fut,
{
    call(client, request)
}

fn reason(status: &Status) -> String {
    economy_kit::error::reason(status).unwrap_or_else(|| format!("{:?}", status.code()))
}

/// Runs `call` on every request, at most `BATCHES_IN_FLIGHT` at once, each retried while
/// it fails transiently; the answers in request order.
async fn batched<Req, Resp, F, Fut>(requests: Vec<Req>, call: F) -> Result<Vec<Resp>, Status>
where
    Req: Clone + Send + Sync + 'static,
    Resp: Send + 'static,
    F: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>> + Send + 'static,
{
    let mut answers: Vec<Option<Resp>> = (0..requests.len()).map(|_| None).collect();
    let mut flight = JoinSet::new();
    let mut waiting = requests.into_iter().enumerate();
    loop {
        while flight.len() < BATCHES_IN_FLIGHT {
            let Some((index, request)) = waiting.next() else { break };
            let call = call.clone();
            flight.spawn(async move { (index, retried(|| call(request.clone())).await) });
        }
        let Some(joined) = flight.join_next().await else { break };
        let (index, answer) = joined.map_err(|error| Status::internal(error.to_string()))?;
        answers[index] = Some(answer?);
    }
    Ok(answers.into_iter().flatten().collect())
}

/// Imports everything in `plan`; `Err` only when the stack keeps failing (re-run later).
pub async fn run(clients: &Clients, plan: &Plan) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    assets(clients, plan, &mut outcome).await?;
    templates(clients, plan, &mut outcome).await?;
    let started = Instant::now();
    balances(clients, plan, &mut outcome).await?;
    outcome.timings.push((format::BALANCES, started.elapsed()));
    let started = Instant::now();
    let ids = import_items(clients, &plan.items, &mut outcome).await?;
    outcome.timings.push((format::ITEMS, started.elapsed()));
    let started = Instant::now();
    import_orders(clients, &plan.orders, &plan.items, &ids, &mut outcome).await?;
    outcome.timings.push((format::ORDERS, started.elapsed()));
    Ok(outcome)
}

fn asset_kind(kind: &str) -> Option<ledger::AssetKind> {
    ledger::AssetKind::from_str_name(&format!("ASSET_KIND_{}", kind.to_ascii_uppercase()))
        .filter(|kind| *kind != ledger::AssetKind::Unspecified)
}

fn item_kind(kind: &str) -> Option<items::ItemKind> {
    items::ItemKind::from_str_name(&format!("ITEM_KIND_{}", kind.to_ascii_uppercase()))
        .filter(|kind| *kind != items::ItemKind::Unspecified)
}

async fn assets(clients: &Clients, plan: &Plan, outcome: &mut Outcome) -> anyhow::Result<()> {
    for Line { line, row } in &plan.assets {
        let Some(kind) = asset_kind(&row.kind) else {
            outcome.refuse(
                format::ASSETS,
                *line,
                "VALIDATION_FAILED",
                "kind: must be currency, material, fragment or quota",
            );
            continue;
        };
        let asset = ledger::Asset {
            code: row.code.clone(),
            display_name: row.display_name.clone(),
            kind: kind.into(),
            metadata: row.metadata.clone().into_iter().collect(),
            created_at: None,
        };
        let request = ledger::DefineAssetRequest { asset: Some(asset) };
        match retried(|| {
            owned(clients.ledger.clone(), request.clone(), |mut c, r| async move { c.define_asset(r).await })
        })
        .await
        {
            Ok(answer) => outcome.count(format::ASSETS, answer.created),
            Err(status) if transient(&status) => return Err(status.into()),
            Err(status) => outcome.refuse(format::ASSETS, *line, &reason(&status), status.message()),
        }
    }
    Ok(())
}

async fn templates(clients: &Clients, plan: &Plan, outcome: &mut Outcome) -> anyhow::Result<()> {
    for Line { line, row } in &plan.templates {
        let Some(kind) = item_kind(&row.kind) else {
            let message = "kind: must be voucher, product, service, equipment, card or other";
            outcome.refuse(format::TEMPLATES, *line, "VALIDATION_FAILED", message);
            continue;
        };
        let template = items::ItemTemplate {
            code: row.code.clone(),
            display_name: row.display_name.clone(),
            kind: kind.into(),
            default_validity_seconds: row.default_validity_seconds,
            redeemable: row.redeemable,
            consumable: row.consumable,
            metadata: row.metadata.clone().into_iter().collect(),
            created_at: None,
            updated_at: None,
        };
        let request = items::DefineTemplateRequest { template: Some(template) };
        match retried(|| {
            owned(clients.items.clone(), request.clone(), |mut c, r| async move { c.define_template(r).await })
        })
        .await
        {
            Ok(answer) => outcome.count(format::TEMPLATES, answer.created),
            Err(status) if transient(&status) => return Err(status.into()),
            Err(status) => outcome.refuse(format::TEMPLATES, *line, &reason(&status), status.message()),
        }
    }
    Ok(())
}

fn balance_row(row: &format::BalanceRow) -> ledger::ImportBalanceRow {
    ledger::ImportBalanceRow {
        external_id: row.external_id.clone(),
        user_id: row.user_id,
        asset_code: row.asset_code.clone(),
        amount: row.amount,
    }
}

async fn balances(clients: &Clients, plan: &Plan, outcome: &mut Outcome) -> anyhow::Result<()> {
    let rows = &plan.balances;
    let requests = rows
        .chunks(BATCH)
        .map(|batch| ledger::ImportBalancesRequest { rows: batch.iter().map(|line| balance_row(&line.row)).collect() })
        .collect();
    let client = clients.ledger.clone();
    let answers = batched(requests, move |request| {
        let mut client = client.clone();
        async move { client.import_balances(request).await }
    })
    .await?;
    for (batch, answer) in rows.chunks(BATCH).zip(answers) {
        for (Line { line, row }, result) in batch.iter().zip(answer.results) {
            match result.outcome() {
                ledger::ImportOutcome::Created | ledger::ImportOutcome::Unchanged => {
                    outcome.imported.balance(&row.asset_code, result.credited);
                    outcome.count(format::BALANCES, result.outcome() == ledger::ImportOutcome::Created);
                }
                _ => outcome.refuse(format::BALANCES, *line, &result.reason, &result.message),
            }
        }
    }
    Ok(())
}

fn timestamp(millis: i64) -> Option<prost_types::Timestamp> {
    Some(economy_kit::time::to_timestamp(millis))
}

fn item_row(item: &Item) -> items::ImportItemRow {
    let status = match item.row.status.as_str() {
        "used" => items::ItemStatus::Used,
        "expired" => items::ItemStatus::Expired,
        "revoked" => items::ItemStatus::Revoked,
        // A locked item is locked by its order's import.
        _ => items::ItemStatus::Available,
    };
    items::ImportItemRow {
        external_id: item.row.external_id.clone(),
        template_code: item.row.template_code.clone(),
        owner_user_id: item.row.owner_user_id,
        status: status.into(),
        metadata: item.row.metadata.clone().into_iter().collect(),
        expires_at: item.expires_at.and_then(timestamp),
        granted_at: timestamp(item.granted_at),
    }
}

/// External id -> instance id of every confirmed item.
async fn import_items(
    clients: &Clients,
    rows: &[Line<Item>],
    outcome: &mut Outcome,
) -> anyhow::Result<HashMap<String, String>> {
    let mut ids = HashMap::new();
    let requests = rows
        .chunks(BATCH)
        .map(|batch| items::ImportItemsRequest { rows: batch.iter().map(|line| item_row(&line.row)).collect() })
        .collect();
    let client = clients.items.clone();
    let answers = batched(requests, move |request| {
        let mut client = client.clone();
        async move { client.import_items(request).await }
    })
    .await?;
    for (batch, answer) in rows.chunks(BATCH).zip(answers) {
        for (Line { line, row }, result) in batch.iter().zip(answer.results) {
            match result.outcome() {
                items::ImportOutcome::Created | items::ImportOutcome::Unchanged => {
                    outcome.count(format::ITEMS, result.outcome() == items::ImportOutcome::Created);
                    if row.row.status != LOCKED {
                        outcome.imported.item(&row.row.template_code, &row.row.status);
                    }
                    ids.insert(row.row.external_id.clone(), result.item_instance_id);
                }
                _ => outcome.refuse(format::ITEMS, *line, &result.reason, &result.message),
            }
        }
    }
    Ok(ids)
}

fn order_row(order: &Order, item_id: &str) -> redemption::ImportOrderRow {
    let pending = order.row.status == "pending";
    redemption::ImportOrderRow {
        external_id: order.row.external_id.clone(),
        item_instance_id: item_id.to_owned(),
        owner_user_id: order.row.owner_user_id,
        status: if pending { redemption::OrderStatus::Pending } else { redemption::OrderStatus::Fulfilled }.into(),
        code: String::new(),
        code_sha256: order.code_hash.clone(),
        created_at: timestamp(order.created_at),
        expires_at: timestamp(order.expires_at),
        resolved_at: order.fulfilled_at.and_then(timestamp),
        redeemer_user_id: order.row.redeemer_user_id.unwrap_or_default(),
    }
}

async fn import_orders(
    clients: &Clients,
    rows: &[Line<Order>],
    items: &[Line<Item>],
    ids: &HashMap<String, String>,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let templates: HashMap<&str, &str> =
        items.iter().map(|line| (line.row.row.external_id.as_str(), line.row.row.template_code.as_str())).collect();
    let mut ready = Vec::new();
    for line in rows {
        match ids.get(&line.row.row.item_external_id) {
            Some(id) => ready.push((line, id.as_str())),
            None => {
                let message = format!("item_external_id: item {} was not imported", line.row.row.item_external_id);
                outcome.refuse(format::ORDERS, line.line, "VALIDATION_FAILED", &message);
            }
        }
    }
    let requests = ready
        .chunks(BATCH)
        .map(|batch| redemption::ImportOrdersRequest {
            rows: batch.iter().map(|(line, id)| order_row(&line.row, id)).collect(),
        })
        .collect();
    let client = clients.redemption.clone();
    let answers = batched(requests, move |request| {
        let mut client = client.clone();
        async move { client.import_orders(request).await }
    })
    .await?;
    for (batch, answer) in ready.chunks(BATCH).zip(answers) {
        for ((line, _), result) in batch.iter().zip(answer.results) {
            match result.outcome() {
                redemption::ImportOutcome::Created | redemption::ImportOutcome::Unchanged => {
                    outcome.count(format::ORDERS, result.outcome() == redemption::ImportOutcome::Created);
                    let order = &line.row.row;
                    outcome.imported.order(&order.status);
                    if order.status == "pending" {
                        let template = templates.get(order.item_external_id.as_str()).copied().unwrap_or_default();
                        outcome.imported.item(template, LOCKED);
                    }
                }
                _ => outcome.refuse(format::ORDERS, line.line, &result.reason, &result.message),
            }
        }
    }
    Ok(())
}
