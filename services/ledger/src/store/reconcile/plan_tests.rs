//! Each chunk of the whole check seeks its index from its position and reads no more than
//! the chunk (docs/ledger.md, "Reconciliation"): no statement of a chunk scans a table,
//! and each one with a limit reads its index in order (no sort), on either backend (sequential and bitmap scans turned off on PostgreSQL for the
//! EXPLAIN, as in the history plan tests).

use super::{balances, entries};
use crate::store::history_plan_tests::{Bind, explainer, plan_of, scans};

#[tokio::test]
async fn every_chunk_statement_seeks_its_index() -> anyhow::Result<()> {
    let (_database, backend, mut conn) = explainer().await?;
    let key = [Bind::Text("user:2"), Bind::Text("POINTS")];
    let cases: [(&str, Vec<Bind<'_>>, &str); 9] = [
        (balances::ROWS_FROM, vec![key[0].clone(), key[1].clone(), Bind::Int(10)], "balances"),
        (balances::ROWS_AFTER, vec![key[0].clone(), key[1].clone(), Bind::Int(10)], "balances"),
        (
            balances::POSTINGS_AFTER,
            vec![key[0].clone(), key[1].clone(), Bind::Int(3), Bind::Int(10)],
            "postings_by_balance_seq",
        ),
        (
            balances::POSTINGS_BETWEEN,
            vec![
                key[0].clone(),
                key[1].clone(),
                Bind::Int(3),
                Bind::Text("user:9"),
                Bind::Text("POINTS"),
                Bind::Int(10),
            ],
            "postings_by_balance_seq",
        ),
        (balances::POSTINGS_AT, vec![key[0].clone(), key[1].clone(), Bind::Int(3)], "postings"),
        (&balances::holds_sql(backend, false), vec![key[0].clone()], "holds_open_by_balance"),
        (&balances::holds_sql(backend, true), vec![key[0].clone(), Bind::Text("user:9")], "holds_open_by_balance"),
        (entries::POSTINGS_AFTER, vec![Bind::Text("e1"), Bind::Int(10)], "postings"),
        (entries::POSTINGS_OF, vec![Bind::Text("e1")], "postings"),
    ];
    for (sql, binds, index) in cases {
        let plan = plan_of(&mut conn, backend, sql, &binds).await?;
        assert!(!scans(&plan) && plan.contains(index), "{sql}\n{plan}");
        let ordered = sql.contains("LIMIT");
        assert!(!ordered || !(plan.contains("Sort") || plan.contains("TEMP B-TREE")), "{sql}\n{plan}");
    }
    Ok(())
}
