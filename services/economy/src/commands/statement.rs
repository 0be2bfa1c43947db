//! `economy statement`: one balance's opening, entries and closing over a period
//! (docs/ledger.md, "Statements"), and the RFC 3339 instants the history commands take.

use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use clap::Args;
use economy_proto::ledger::v1 as pb;

use crate::client::Ledger;
use crate::commands::AccountArgs;
use crate::output;

/// Parses an RFC 3339 instant in UTC (`2026-12-07T02:00:00Z`, fractions allowed) into a
/// protobuf timestamp; instants before 1970 are refused.
pub fn instant(value: &str) -> Result<prost_types::Timestamp, String> {
    let at = humantime::parse_rfc3339_weak(value.trim())
        .map_err(|error| format!("`{value}` is not an RFC 3339 UTC time (e.g. 2026-12-07T02:00:00Z): {error}"))?;
    let since = at.duration_since(UNIX_EPOCH).map_err(|_| format!("`{value}` is before 1970"))?;
    let seconds = i64::try_from(since.as_secs()).map_err(|_| format!("`{value}` is out of range"))?;
    let nanos = i32::try_from(since.subsec_nanos()).map_err(|_| format!("`{value}` is out of range"))?;
    Ok(prost_types::Timestamp { seconds, nanos })
}

/// `economy statement`.
#[derive(Debug, Args)]
pub struct Statement {
    /// The account.
    #[command(flatten)]
    pub account: AccountArgs,
    /// The asset.
    #[arg(long)]
    pub asset: String,
    /// Start of the period (RFC 3339 UTC; entries at or after it).
    #[arg(long, value_parser = instant)]
    pub from: prost_types::Timestamp,
    /// End of the period (RFC 3339 UTC; entries before it).
    #[arg(long, value_parser = instant)]
    pub to: prost_types::Timestamp,
    /// Entries per page (1..500; default 50).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// `next page` token printed by the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

/// Runs `economy statement`: `opening ...`, each entry with its postings and the
/// balance after it, `closing ...`, then `next page: TOKEN` when there is more.
pub async fn statement(ledger: &mut Ledger, args: Statement) -> anyhow::Result<ExitCode> {
    let request = pb::GetStatementRequest {
        account: Some(args.account.account()),
        asset_code: args.asset,
        from: Some(args.from),
        to: Some(args.to),
        page_size: args.page_size,
        page_token: args.page_token,
    };
    let response = ledger.get_statement(request).await?.into_inner();
    let balance = |balance: Option<&pb::Balance>| balance.map_or_else(|| "-".to_owned(), output::balance);
    println!("opening  {}", balance(response.opening.as_ref()));
    for line in &response.lines {
        if let Some(transaction) = &line.transaction {
            output::transaction(transaction).iter().for_each(|text| println!("{text}"));
        }
        println!(
            "  change {:+} available {:+} frozen -> {}",
            line.available_change,
            line.frozen_change,
            balance(line.balance_after.as_ref())
        );
    }
    println!("closing  {}", balance(response.closing.as_ref()));
    if !response.next_page_token.is_empty() {
        println!("next page: {}", response.next_page_token);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::instant;

    #[test]
    fn instants_parse_as_utc_rfc3339() {
        let at = instant("2026-12-07T02:00:00.250Z").expect("parses");
        assert_eq!((at.seconds, at.nanos), (1_796_608_800, 250_000_000));
        assert!(instant("yesterday").is_err());
        assert!(instant("1969-12-31T23:59:59Z").is_err());
    }
}
