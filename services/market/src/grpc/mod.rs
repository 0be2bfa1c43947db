//! gRPC adapter of `economy.market.v1.MarketService`: each handler validates the request,
//! calls the flows in `service` and converts back.

mod compensation;
mod convert;
mod error;
mod offers;

use std::sync::Arc;

use economy_kit::audit;
use economy_kit::error::Violations;
use economy_kit::identity::{caller, checked_idempotency_key};
use economy_proto::market::v1 as pb;
use pb::market_service_server::MarketService;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::domain::MarketError;
use crate::service::Market;
use crate::store::{Browse, Defined, Sort};

/// `ErrorInfo.domain` of every market error.
pub const DOMAIN: &str = "economy.market";

/// The service implementation.
#[derive(Debug, Clone)]
pub struct MarketApi {
    market: Arc<Market>,
}

impl MarketApi {
    /// Serves `market`.
    pub fn new(market: Arc<Market>) -> Self {
        Self { market }
    }

    /// A completed exchange as a write answers it: with the user's resulting balances.
    async fn answered(&self, exchange: &crate::domain::Exchange) -> pb::Exchange {
        let resulting_balances = self.market.balances_after(&exchange.ledger_transaction_ids, exchange.user_id).await;
        pb::Exchange { resulting_balances, ..offers::exchange(exchange) }
    }
}

fn check_id(violations: &mut Violations, field: &str, value: &str) {
    violations.check(uuid::Uuid::try_parse(value).is_ok(), field, "a UUID");
}

/// Runs a saga in a task of its own, so a client that gives up (its call cancelled) does
/// not stop it between two steps: it finishes and releases its claim, and a retry with
/// the key is answered at once (docs/market.md, "Exchanges").
async fn run_to_end<T: Send + 'static>(
    saga: impl std::future::Future<Output = Result<T, MarketError>> + Send + 'static,
) -> Result<T, Status> {
    let task = tokio::spawn(saga.instrument(tracing::Span::current()));
    match task.await {
        Ok(outcome) => Ok(outcome?),
        Err(error) => Err(MarketError::Storage(economy_kit::error::StorageCause::new(error)).into()),
    }
}

/// An offer id, or VALIDATION_FAILED naming `offer_id`.
fn checked_offer_id(offer_id: &str) -> Result<&str, Status> {
    let mut violations = Violations::default();
    violations.check(offers::is_offer_id(offer_id), "offer_id", "an offer id");
    violations.finish(DOMAIN)?;
    Ok(offer_id)
}

/// Page token of a browse: `<price>:<listing id>`.
fn browse_token(token: &str, violations: &mut Violations) -> Option<(i64, String)> {
    if token.is_empty() {
        return None;
    }
    let parsed = token.split_once(':').and_then(|(price, id)| Some((price.parse().ok()?, id.to_owned())));
    violations.check(parsed.is_some(), "page_token", "a token from the previous page");
    parsed
}

#[tonic::async_trait]
impl MarketService for MarketApi {
    async fn create_listing(
        &self,
        request: Request<pb::CreateListingRequest>,
    ) -> Result<Response<pb::CreateListingResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let key = checked_idempotency_key(&request, &request.get_ref().idempotency_key, &mut violations);
        let new = convert::new_listing(request.get_ref(), &mut violations);
        violations.finish(DOMAIN)?;
        let new = new.ok_or_else(|| Status::internal("validated listing missing"))?;
        let (listing, replayed) = self.market.create(&caller, &key, new).await?;
        Ok(Response::new(pb::CreateListingResponse { listing: Some(convert::listing(&listing)), replayed }))
    }

    async fn purchase_listing(
        &self,
        request: Request<pb::PurchaseListingRequest>,
    ) -> Result<Response<pb::PurchaseListingResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let key = checked_idempotency_key(&request, &request.get_ref().idempotency_key, &mut violations);
        check_id(&mut violations, "listing_id", &request.get_ref().listing_id);
        violations.finish(DOMAIN)?;
        let (trade, listing, replayed) = self.market.purchase(&caller, &key, &request.get_ref().listing_id).await?;
        let balances = self.market.balances_after(&trade.ledger_transaction_ids, trade.buyer_user_id).await;
        let buyer_balance = balances.into_iter().find(|balance| balance.asset_code == trade.price_asset);
        Ok(Response::new(pb::PurchaseListingResponse {
            trade: Some(pb::Trade { buyer_balance, ..convert::trade(&trade) }),
            listing: Some(convert::listing(&listing)),
            replayed,
        }))
    }

    async fn cancel_listing(
        &self,
        request: Request<pb::CancelListingRequest>,
    ) -> Result<Response<pb::CancelListingResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let key = checked_idempotency_key(&request, &request.get_ref().idempotency_key, &mut violations);
        check_id(&mut violations, "listing_id", &request.get_ref().listing_id);
        violations.finish(DOMAIN)?;
        let (listing, replayed) = self.market.cancel(&caller, &key, &request.get_ref().listing_id).await?;
        Ok(Response::new(pb::CancelListingResponse { listing: Some(convert::listing(&listing)), replayed }))
    }

    async fn get_listing(
        &self,
        request: Request<pb::GetListingRequest>,
    ) -> Result<Response<pb::GetListingResponse>, Status> {
        caller(&request)?;
        let mut violations = Violations::default();
        check_id(&mut violations, "listing_id", &request.get_ref().listing_id);
        violations.finish(DOMAIN)?;
        let listing = self.market.get(&request.get_ref().listing_id).await?;
        Ok(Response::new(pb::GetListingResponse { listing: Some(convert::listing(&listing)) }))
    }

    async fn list_listings(
        &self,
        request: Request<pb::ListListingsRequest>,
    ) -> Result<Response<pb::ListListingsResponse>, Status> {
        caller(&request)?;
        let message = request.get_ref();
        let mut violations = Violations::default();
        let limit = convert::page_size(message.page_size, &mut violations);
        let after = browse_token(&message.page_token, &mut violations);
        for (field, value) in [("asset_code", &message.asset_code), ("item_template_code", &message.item_template_code)]
        {
            violations.check(value.is_empty() || convert::is_code(value), field, "a code, or empty for any");
        }
        let sort = match pb::ListingSort::try_from(message.sort) {
            Ok(pb::ListingSort::PriceAscending) => Some(Sort::PriceAscending),
            Ok(pb::ListingSort::PriceDescending) => Some(Sort::PriceDescending),
            Ok(pb::ListingSort::Unspecified | pb::ListingSort::Newest) => Some(Sort::Newest),
            Err(_) => None,
        };
        violations.check(sort.is_some(), "sort", "a ListingSort, or LISTING_SORT_UNSPECIFIED for the newest first");
        violations.finish(DOMAIN)?;
        let sort = sort.unwrap_or(Sort::Newest);
        let browse = Browse {
            asset_code: &message.asset_code,
            template_code: &message.item_template_code,
            sort,
            after,
            limit: limit + 1,
            now: self.market.clock.now_millis(),
        };
        let mut listings = self.market.browse(&browse).await?;
        let next_page_token = next_token(&mut listings, limit, |last| format!("{}:{}", last.price.amount, last.id));
        Ok(Response::new(pb::ListListingsResponse {
            listings: listings.iter().map(convert::listing).collect(),
            next_page_token,
        }))
    }

    async fn list_trades(
        &self,
        request: Request<pb::ListTradesRequest>,
    ) -> Result<Response<pb::ListTradesResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.get_ref();
        let mut violations = Violations::default();
        violations.check(message.user_id >= 0, "user_id", "a positive user id, or 0 for the caller");
        let limit = convert::page_size(message.page_size, &mut violations);
        if !message.page_token.is_empty() {
            check_id(&mut violations, "page_token", &message.page_token);
        }
        violations.finish(DOMAIN)?;
        let mut trades = self.market.trades(&caller, message.user_id, &message.page_token, limit + 1).await?;
        let next_page_token = next_token(&mut trades, limit, |last| last.id.clone());
        Ok(Response::new(pb::ListTradesResponse {
            trades: trades.iter().map(convert::trade).collect(),
            next_page_token,
        }))
    }

    async fn redrive_outbox(
        &self,
        request: Request<pb::RedriveOutboxRequest>,
    ) -> Result<Response<pb::RedriveOutboxResponse>, Status> {
        let caller = caller(&request)?;
        let (key, target, reason) = compensation::redrive_outbox(&request)?;
        let redriven = self.market.redrive_outbox(&caller, &key, &target, &reason).await?;
        Ok(Response::new(pb::RedriveOutboxResponse {
            entry: Some(compensation::outbox_entry(&redriven.entry)),
            audit_record: Some(audit::to_proto(&redriven.record)),
            replayed: redriven.replayed,
        }))
    }

    async fn list_stuck_outbox(
        &self,
        request: Request<pb::ListStuckOutboxRequest>,
    ) -> Result<Response<pb::ListStuckOutboxResponse>, Status> {
        let caller = caller(&request)?;
        let entries = self.market.stuck_outbox(&caller, request.get_ref().older_than_seconds).await?;
        Ok(Response::new(pb::ListStuckOutboxResponse {
            entries: entries.iter().map(compensation::outbox_entry).collect(),
        }))
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        if !caller(&request)?.is_admin() {
            return Err(
                crate::domain::MarketError::PermissionDenied("only admins may read audit records".into()).into()
            );
        }
        let query = compensation::audit_query(request.get_ref())?;
        let page = self.market.store.audit_records(&query).await?;
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records: page.records.iter().map(audit::to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn define_offer(
        &self,
        request: Request<pb::DefineOfferRequest>,
    ) -> Result<Response<pb::DefineOfferResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let definition = offers::offer_definition(request.get_ref(), &mut violations);
        violations.finish(DOMAIN)?;
        let (offer, defined) = self.market.define_offer(&caller, definition).await?;
        Ok(Response::new(pb::DefineOfferResponse {
            offer: Some(offers::offer(&offer, self.market.clock.now_millis())),
            created: defined == Defined::Created,
            changed: defined != Defined::Unchanged,
        }))
    }

    async fn disable_offer(
        &self,
        request: Request<pb::DisableOfferRequest>,
    ) -> Result<Response<pb::DisableOfferResponse>, Status> {
        let caller = caller(&request)?;
        let offer_id = checked_offer_id(&request.get_ref().offer_id)?;
        let offer = self.market.disable_offer(&caller, offer_id).await?;
        Ok(Response::new(pb::DisableOfferResponse {
            offer: Some(offers::offer(&offer, self.market.clock.now_millis())),
        }))
    }

    async fn get_offer(&self, request: Request<pb::GetOfferRequest>) -> Result<Response<pb::GetOfferResponse>, Status> {
        caller(&request)?;
        let offer = self.market.offer(checked_offer_id(&request.get_ref().offer_id)?).await?;
        Ok(Response::new(pb::GetOfferResponse { offer: Some(offers::offer(&offer, self.market.clock.now_millis())) }))
    }

    async fn list_offers(
        &self,
        request: Request<pb::ListOffersRequest>,
    ) -> Result<Response<pb::ListOffersResponse>, Status> {
        caller(&request)?;
        let message = request.get_ref();
        let mut violations = Violations::default();
        let limit = convert::page_size(message.page_size, &mut violations);
        let filter = pb::OfferFilter::try_from(message.filter).ok();
        violations.check(filter.is_some(), "filter", "OFFER_FILTER_ACTIVE or OFFER_FILTER_ALL");
        let token_ok = message.page_token.is_empty() || offers::is_offer_id(&message.page_token);
        violations.check(token_ok, "page_token", "a token from the previous page");
        violations.finish(DOMAIN)?;
        let all = filter == Some(pb::OfferFilter::All);
        let mut page = self.market.offers(all, &message.page_token, limit + 1).await?;
        let next_page_token = next_token(&mut page, limit, |offer| offer.definition.id.clone());
        let now = self.market.clock.now_millis();
        Ok(Response::new(pb::ListOffersResponse {
            offers: page.iter().map(|offer| offers::offer(offer, now)).collect(),
            next_page_token,
        }))
    }

    async fn purchase_offer(
        &self,
        request: Request<pb::PurchaseOfferRequest>,
    ) -> Result<Response<pb::PurchaseOfferResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.get_ref();
        let mut violations = Violations::default();
        let key = checked_idempotency_key(&request, &message.idempotency_key, &mut violations);
        violations.check(offers::is_offer_id(&message.offer_id), "offer_id", "an offer id");
        let quantity = offers::quantity(message.quantity, &mut violations);
        violations.finish(DOMAIN)?;
        let (market, offer_id) = (self.market.clone(), message.offer_id.clone());
        let run = async move { market.purchase_offer(&caller, &key, &offer_id, quantity).await };
        let (exchange, replayed) = run_to_end(run).await?;
        let exchange = self.answered(&exchange).await;
        Ok(Response::new(pb::PurchaseOfferResponse { exchange: Some(exchange), replayed }))
    }

    async fn grant_bundle(
        &self,
        request: Request<pb::GrantBundleRequest>,
    ) -> Result<Response<pb::GrantBundleResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let key = checked_idempotency_key(&request, &request.get_ref().idempotency_key, &mut violations);
        let bundle = offers::new_bundle(request.get_ref(), &mut violations);
        violations.finish(DOMAIN)?;
        let market = self.market.clone();
        let (exchange, replayed) = run_to_end(async move { market.grant_bundle(&caller, &key, bundle).await }).await?;
        let exchange = self.answered(&exchange).await;
        Ok(Response::new(pb::GrantBundleResponse { exchange: Some(exchange), replayed }))
    }

    async fn get_exchange(
        &self,
        request: Request<pb::GetExchangeRequest>,
    ) -> Result<Response<pb::GetExchangeResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        check_id(&mut violations, "exchange_id", &request.get_ref().exchange_id);
        violations.finish(DOMAIN)?;
        let exchange = self.market.exchange(&caller, &request.get_ref().exchange_id).await?;
        Ok(Response::new(pb::GetExchangeResponse { exchange: Some(offers::exchange(&exchange)) }))
    }

    async fn list_exchanges(
        &self,
        request: Request<pb::ListExchangesRequest>,
    ) -> Result<Response<pb::ListExchangesResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.get_ref();
        let mut violations = Violations::default();
        let limit = convert::page_size(message.page_size, &mut violations);
        violations.check(message.user_id >= 0, "user_id", "a positive user id, or 0 for the caller");
        if !message.page_token.is_empty() {
            check_id(&mut violations, "page_token", &message.page_token);
        }
        violations.finish(DOMAIN)?;
        let mut page = self.market.exchanges(&caller, message.user_id, &message.page_token, limit + 1).await?;
        let next_page_token = next_token(&mut page, limit, |exchange| exchange.id.clone());
        Ok(Response::new(pb::ListExchangesResponse {
            exchanges: page.iter().map(offers::exchange).collect(),
            next_page_token,
        }))
    }

    async fn list_stuck_exchanges(
        &self,
        request: Request<pb::ListStuckExchangesRequest>,
    ) -> Result<Response<pb::ListStuckExchangesResponse>, Status> {
        let caller = caller(&request)?;
        let exchanges = self.market.stuck_exchanges(&caller, request.get_ref().older_than_seconds).await?;
        Ok(Response::new(pb::ListStuckExchangesResponse {
            exchanges: exchanges.iter().map(offers::exchange).collect(),
        }))
    }
}

/// Cuts `rows` (fetched `limit + 1`) to `limit`; the token of the last row when more exist.
fn next_token<T>(rows: &mut Vec<T>, limit: i64, token: impl Fn(&T) -> String) -> String {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() <= limit {
        return String::new();
    }
    rows.truncate(limit);
    rows.last().map(token).unwrap_or_default()
}
