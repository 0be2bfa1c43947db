//! `economy`: `economy up` runs the whole stack in one process (ARCHITECTURE.md,
//! "Bird's-eye view"); `economy token` mints development tokens; `economy health ADDR`
//! asks one server for its gRPC health status; every other command is a gRPC client of
//! the stack's gateway, authenticated with `--token` or a token minted from
//! `<data-dir>/dev-jwt.secret`.
//!
//! Exit status: 0 success, 1 error (printed as `error: <CODE> <REASON>: <message>`) or a
//! health status other than `SERVING`, 2 bad usage, 3 `reconcile` found inconsistencies.

mod client;
mod commands;
mod output;
mod parse;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use economy_proto::items::v1::item_service_client::ItemServiceClient;
use economy_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use economy_proto::market::v1::market_service_client::MarketServiceClient;
use economy_proto::redemption::v1::redemption_service_client::RedemptionServiceClient;

use crate::client::GlobalArgs;
use crate::commands::{
    admin, balances, catalog, gateway, health, history, holds, items, jobs, market, offers, redemption, statement,
    watch,
};

/// Virtual-economy backend: run the stack and operate the ledger, items, redemption codes and the market.
#[derive(Debug, Parser)]
#[command(name = "economy", version)]
struct Cli {
    /// Connection and identity options.
    #[command(flatten)]
    global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole stack (gateway and services) until Ctrl-C.
    Up(up::UpArgs),
    /// Print a development token for `--user-id`/`--role` (HS256, from the stack's secret).
    Token(TokenArgs),
    /// Ask one server (`HOST:PORT`) for its gRPC health status; exit 0 only when SERVING.
    Health(health::Health),
    /// Apply every service's pending database migrations once, then exit.
    Migrate(commands::migrate::MigrateArgs),
    /// Copy a running stack's SQLite databases into an empty DIR, with a manifest.
    Backup(commands::backup::BackupArgs),
    /// Restore a backup DIR into an empty `--data-dir`, verified first.
    Restore(commands::backup::RestoreArgs),
    /// Bring an existing economy in from DIR (docs/import.md); exit status 3 when the report differs.
    Import(commands::import::Import),
    /// The commands that talk to a running stack.
    #[command(flatten)]
    Client(ClientCommand),
}

/// The client commands.
#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Manage the asset catalog.
    #[command(subcommand)]
    Asset(catalog::AssetCommand),
    /// Manage conversion rules.
    #[command(subcommand)]
    Rule(catalog::RuleCommand),
    /// Credit (or with --debit, debit) a user's balance (admin).
    Adjust(balances::Adjust),
    /// Show one balance, or every non-zero balance of an account (now or --as-of).
    Balance(balances::Balance),
    /// Move an amount from one user to another.
    Transfer(balances::Transfer),
    /// Freeze, settle, release and inspect holds.
    #[command(subcommand)]
    Hold(holds::HoldCommand),
    /// Convert assets with a conversion rule.
    Convert(balances::Convert),
    /// Show an account's (or a correlation's) journal entries, newest first.
    History(history::History),
    /// Show one balance's statement for a period: opening, entries, closing.
    Statement(statement::Statement),
    /// Check the ledger's invariants (exit status 3 when violated).
    Reconcile(history::Reconcile),
    /// Manage item templates.
    #[command(subcommand)]
    Template(items::TemplateCommand),
    /// Grant, list and inspect item instances.
    #[command(subcommand)]
    Item(items::ItemCommand),
    /// Redemption codes: create, fulfil, cancel, reissue, inspect.
    #[command(subcommand)]
    Redeem(redemption::RedeemCommand),
    /// Show a backpack: balances and items.
    Backpack(gateway::Backpack),
    /// Print a backpack's balance changes and item events as they happen.
    Watch(watch::Watch),
    /// Run the cross-service consistency check (admin; exit status 3 on findings).
    Check,
    /// The runs of the scheduled jobs, newest first (admin).
    Jobs(jobs::Jobs),
    /// The player market: sell, browse, buy, cancel, trades.
    #[command(subcommand)]
    Market(market::MarketCommand),
    /// The platform's shop: define, list, show, disable and buy offers.
    #[command(subcommand)]
    Offer(offers::OfferCommand),
    /// A user's exchanges (offer purchases and bundles), newest first.
    Exchanges(offers::Exchanges),
    /// Reward bundles: assets and items given as one business event (admin).
    #[command(subcommand)]
    Bundle(offers::BundleCommand),
    /// Compensation tools (admin, with a reason, audited) and their audit records.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

/// Options of `economy token`.
#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// How long the token is valid (e.g. `1h`, `30m`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: std::time::Duration,
}

#[global_allocator]
static ALLOCATOR: economy_kit::Allocator = economy_kit::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Up(_)) {
        die_quietly_on_closed_pipe();
    }
    match run(cli).await {
        Ok(code) => code,
        Err(error) => client::report(&error),
    }
}

/// Exit status of a command whose reader stopped early: the shell's status of a process
/// ended by `SIGPIPE` (128 + 13).
const CLOSED_OUTPUT: i32 = 141;

/// A command's output piped into a reader that stops early (`economy history | head`)
/// ends the process quietly with status 141, as Unix tools do, instead of a panic
/// message: `println!` panics when stdout is closed, and this hook turns that one panic
/// into an exit. `SIGPIPE` itself stays ignored (Rust's default): HTTP/2 writes a socket
/// with `writev`, which raises it when a server closes the connection, and the default
/// action would kill the command silently instead of reporting the error. Not for
/// `economy up`, a server whose own log output must never stop it.
fn die_quietly_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if message
            .is_some_and(|message| message.starts_with("failed printing to stdout") && message.contains("Broken pipe"))
        {
            std::process::exit(CLOSED_OUTPUT);
        }
        report(info);
    }));
}

/// Dispatches one command.
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = match cli.command {
        Command::Up(args) => return up::run(&args, &cli.global.data_dir).await,
        Command::Token(args) => {
            println!("{}", client::mint_token(&cli.global, args.ttl.as_secs().max(1))?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Health(args) => return health::run(args, &cli.global).await,
        Command::Migrate(args) => return commands::migrate::run(&args, &cli.global.data_dir).await,
        Command::Backup(args) => return commands::backup::run(&args, &cli.global.data_dir).await,
        Command::Restore(args) => return commands::backup::restore(&args, &cli.global.data_dir).await,
        Command::Import(args) => return commands::import::run(args, &cli.global).await,
        Command::Client(command) => command,
    };
    let (channel, bearer) = client::connect(&cli.global).await?;
    let mut ledger = LedgerServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut items = ItemServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut redemption = RedemptionServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut market = MarketServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let authed = tonic::service::interceptor::InterceptedService::new(channel, bearer);
    match command {
        ClientCommand::Asset(command) => catalog::asset(&mut ledger, command).await,
        ClientCommand::Rule(command) => catalog::rule(&mut ledger, command).await,
        ClientCommand::Adjust(args) => balances::adjust(&mut ledger, args).await,
        ClientCommand::Balance(args) => balances::balance(&mut ledger, args).await,
        ClientCommand::Transfer(args) => balances::transfer(&mut ledger, args).await,
        ClientCommand::Hold(command) => holds::run(&mut ledger, command).await,
        ClientCommand::Convert(args) => balances::convert(&mut ledger, args).await,
        ClientCommand::History(args) => history::history(&mut ledger, args).await,
        ClientCommand::Statement(args) => statement::statement(&mut ledger, args).await,
        ClientCommand::Reconcile(args) => history::reconcile(&mut ledger, args).await,
        ClientCommand::Template(command) => items::template(&mut items, command).await,
        ClientCommand::Item(command) => items::item(&mut items, command).await,
        ClientCommand::Redeem(command) => redemption::run(&mut redemption, command).await,
        ClientCommand::Market(command) => market::run(&mut market, command).await,
        ClientCommand::Offer(command) => offers::offer(&mut market, command).await,
        ClientCommand::Exchanges(args) => offers::exchanges(&mut market, args).await,
        ClientCommand::Bundle(command) => offers::bundle(&mut market, command).await,
        ClientCommand::Backpack(args) => gateway::backpack(authed, args).await,
        ClientCommand::Watch(args) => watch::watch(authed, args).await,
        ClientCommand::Check => gateway::check(authed).await,
        ClientCommand::Jobs(args) => {
            let clients = admin::Clients {
                ledger: &mut ledger,
                items: &mut items,
                redemption: &mut redemption,
                market: &mut market,
                gateway: authed,
            };
            jobs::run(clients, args).await
        }
        ClientCommand::Admin(command) => {
            let clients = admin::Clients {
                ledger: &mut ledger,
                items: &mut items,
                redemption: &mut redemption,
                market: &mut market,
                gateway: authed,
            };
            admin::run(clients, command).await
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["economy", "balance", "--user", "2", "--endpoint", "http://x:1", "--role", "0"])
            .expect("parsed");
        assert_eq!(cli.global.endpoint.as_deref(), Some("http://x:1"));
        assert_eq!(cli.global.role, 0);
    }

    #[test]
    fn bad_values_are_usage_errors_not_panics() {
        for args in [
            &["economy", "transfer", "--from", "2", "--to", "3", "--asset", "POINTS", "--amount", "0"][..],
            &["economy", "rule", "define", "r", "--from", "a", "--to", "b:1"],
            &["economy", "asset", "define", "X", "--name", "x", "--kind", "gem"],
            &["economy", "balance", "--user", "2", "--system", "SYSTEM_ISSUANCE"],
            &["economy", "hold", "create", "--user", "2", "--asset", "P", "--amount", "1", "--expires-in", "soon"],
            &["economy", "balance", "--user", "2", "--user-id", "0"],
            &["economy", "offer", "define", "o", "--name", "O", "--price", "POINTS:1", "--limit-per-window", "1"],
            &["economy", "offer", "define", "o", "--name", "O", "--price", "POINTS:1", "--reward-item", "sword:0"],
            &["economy", "offer", "define", "o", "--name", "O", "--price", "POINTS:1", "--starts-at", "soon"],
            &["economy", "offer", "define", "o", "--name", "O"],
            &["economy", "offer", "buy", "o", "--quantity", "0"],
            &["economy", "bundle", "grant", "--user", "0", "--asset", "POINTS:1"],
            &["economy", "exchanges", "--id", "e", "--user", "2"],
            &["economy", "exchanges", "--stuck", "0"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn history_commands_take_instants_and_a_correlation() {
        let at = "2026-12-07T02:00:00Z";
        for args in [
            &["economy", "balance", "--user", "2", "--asset", "POINTS", "--as-of", at][..],
            &["economy", "statement", "--system", "SYSTEM_ISSUANCE", "--asset", "POINTS", "--from", at, "--to", at],
            &["economy", "history", "--correlation", "order-1", "--business-type", "TRANSFER", "--from", at],
            &["economy", "history", "--user", "2", "--to", at],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
        for args in [
            &["economy", "balance", "--user", "2", "--as-of", "yesterday"][..],
            &["economy", "statement", "--user", "2", "--asset", "POINTS", "--from", at],
            &["economy", "history", "--business-type", "TRANSFER"],
            &["economy", "history", "--user", "2", "--system", "SYSTEM_ISSUANCE"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
