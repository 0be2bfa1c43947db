//! `economy asset …` and `economy rule …`: the asset catalog and conversion rules.
//! Both are upserts keyed by code or id; like every write they go through the gateway
//! with an idempotency key.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use economy_proto::ledger::v1 as pb;

use crate::client::{KeyArgs, Ledger};
use crate::output;
use crate::parse::{self, AssetAmount, Kind};

/// `economy asset …`.
#[derive(Debug, Subcommand)]
pub enum AssetCommand {
    /// Define an asset, or update its name, kind and metadata (admin).
    Define(DefineAsset),
    /// List the asset catalog.
    List,
}

/// `economy asset define`.
#[derive(Debug, Args)]
pub struct DefineAsset {
    /// Asset code: a letter, then letters, digits or `_` (e.g. `POINTS`, `red_shard`).
    pub code: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Kind of asset.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Metadata entry `key=value`; repeat for more.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub meta: Vec<(String, String)>,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy rule …`.
#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Define or replace a conversion rule (admin).
    Define(DefineRule),
    /// List the conversion rules.
    List,
}

/// `economy rule define`.
#[derive(Debug, Args)]
pub struct DefineRule {
    /// Rule id: a letter, then letters, digits or `_` (e.g. `shard_to_crystal`).
    pub id: String,
    /// What one conversion burns, `ASSET:AMOUNT` (e.g. `red_shard:10`).
    #[arg(long, value_name = "ASSET:AMOUNT", value_parser = parse::asset_amount)]
    pub from: AssetAmount,
    /// What one conversion mints, `ASSET:AMOUNT` (e.g. `red_crystal:1`).
    #[arg(long, value_name = "ASSET:AMOUNT", value_parser = parse::asset_amount)]
    pub to: AssetAmount,
    /// Define the rule disabled (conversions fail with RULE_DISABLED).
    #[arg(long)]
    pub disabled: bool,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Runs `economy asset …`.
pub async fn asset(ledger: &mut Ledger, command: AssetCommand) -> anyhow::Result<ExitCode> {
    match command {
        AssetCommand::Define(args) => {
            let asset = pb::Asset {
                code: args.code,
                display_name: args.name,
                kind: pb::AssetKind::from(args.kind).into(),
                metadata: args.meta.into_iter().collect::<HashMap<_, _>>(),
                created_at: None,
            };
            let response = ledger
                .define_asset(args.key.request(pb::DefineAssetRequest { asset: Some(asset) })?)
                .await?
                .into_inner();
            let verb = if response.created { "created" } else { "updated" };
            if let Some(asset) = response.asset {
                println!("asset {verb}: {}", output::asset(&asset));
            }
        }
        AssetCommand::List => {
            let response = ledger.list_assets(pb::ListAssetsRequest {}).await?.into_inner();
            if response.assets.is_empty() {
                println!("no assets defined");
            }
            response.assets.iter().for_each(|asset| println!("{}", output::asset(asset)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `economy rule …`.
pub async fn rule(ledger: &mut Ledger, command: RuleCommand) -> anyhow::Result<ExitCode> {
    match command {
        RuleCommand::Define(args) => {
            let rule = pb::ConversionRule {
                id: args.id,
                from_asset: args.from.asset,
                from_amount: args.from.amount,
                to_asset: args.to.asset,
                to_amount: args.to.amount,
                enabled: !args.disabled,
            };
            let request = args.key.request(pb::DefineConversionRuleRequest { rule: Some(rule) })?;
            let response = ledger.define_conversion_rule(request).await?.into_inner();
            if let Some(rule) = response.rule {
                println!("rule defined: {}", output::rule(&rule));
            }
        }
        RuleCommand::List => {
            let response = ledger.list_conversion_rules(pb::ListConversionRulesRequest {}).await?.into_inner();
            if response.rules.is_empty() {
                println!("no conversion rules defined");
            }
            response.rules.iter().for_each(|rule| println!("{}", output::rule(rule)));
        }
    }
    Ok(ExitCode::SUCCESS)
}
