//! The Prometheus endpoint of `economy up` (docs/operations.md, "Observability"): with `metrics.listen` set the
//! banner names it, and after a few calls through the gateway a scrape shows the RPC
//! counts and latencies of the gateway and the ledger, the idempotency outcomes, snapshot
//! sizes, job runs, outbox depth and database pool use.

use economy_e2e::Stack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET http://<addr>/metrics`: the body of a 200 answer.
async fn scrape(url: &str) -> anyhow::Result<String> {
    let addr = url.trim_start_matches("http://").trim_end_matches("/metrics");
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no HTTP answer: {response}"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "scrape failed: {head}");
    anyhow::ensure!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    Ok(body.to_owned())
}

/// The value of the sample `name{…}` carrying every label of `labels`.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let matches = metric == name && labels.iter().all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_serves_its_metrics() -> anyhow::Result<()> {
    let stack = Stack::start_with_env(&[("ECONOMY_METRICS__LISTEN", "127.0.0.1:0")]).await?;
    let url = stack
        .banner
        .iter()
        .find_map(|line| line.strip_prefix("  metrics ").map(|rest| rest.trim().to_owned()))
        .ok_or_else(|| anyhow::anyhow!("no metrics line in the banner: {:?}", stack.banner))?;
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"), "{url}");

    stack.ok(&["asset", "define", "POINTS", "--name", "Points", "--kind", "currency"]).await?;
    let key = "idem_0190f0a4-2b9c-7d1e-8f00-00000000beef";
    let adjust =
        |amount: &'static str| ["adjust", "--user", "2", "--asset", "POINTS", "--amount", amount, "--reason", "x"];
    stack.ok(&[&adjust("10")[..], &["--idempotency-key", key]].concat()).await?;
    stack.ok(&[&adjust("10")[..], &["--idempotency-key", key]].concat()).await?;
    let conflict = stack.run(&[&adjust("11")[..], &["--idempotency-key", key]].concat()).await?;
    assert!(conflict.stderr.contains("IDEMPOTENCY_KEY_CONFLICT"), "{}", conflict.stderr);
    stack.ok(&["balance", "--user", "2"]).await?;

    let (gateway, ledger) = ("economy.gateway.v1.Gateway", "economy.ledger.v1.LedgerService");
    let adjust_labels = |server, code| {
        [
            ("server", server),
            ("grpc_service", ledger),
            ("grpc_method", "AdjustBalance"),
            ("grpc_type", "unary"),
            ("grpc_code", code),
        ]
    };
    let mut metrics = String::new();
    // The last response's count lands when its body ends: allow a moment.
    for _ in 0..50 {
        metrics = scrape(&url).await?;
        if sample(&metrics, "grpc_server_handled_total", &adjust_labels(gateway, "AlreadyExists")).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let value = |name: &str, labels: &[(&str, &str)]| sample(&metrics, name, labels);
    assert_eq!(value("grpc_server_handled_total", &adjust_labels(gateway, "OK")), Some(2.0), "{metrics}");
    assert_eq!(value("grpc_server_handled_total", &adjust_labels(gateway, "AlreadyExists")), Some(1.0));
    assert_eq!(value("grpc_server_handled_total", &adjust_labels(ledger, "OK")), Some(1.0), "executed once");
    let started = &adjust_labels(gateway, "")[..4];
    assert_eq!(value("grpc_server_started_total", started), Some(3.0));
    let duration = [("server", ledger), ("grpc_method", "AdjustBalance"), ("grpc_type", "unary")];
    assert_eq!(value("grpc_server_handling_seconds_count", &duration), Some(1.0));
    for le in ["0.0001", "60", "+Inf"] {
        let bucket = value("grpc_server_handling_seconds_bucket", &[&duration[..], &[("le", le)]].concat());
        assert!(bucket.is_some(), "bucket {le}");
    }
    for name in ["grpc_server_started_total", "grpc_server_handled_total", "grpc_server_handling_seconds"] {
        assert!(metrics.contains(&format!("# HELP {name} ")), "{name} has no HELP");
    }
    // The build and the process itself.
    assert_eq!(value("economy_build_info", &[("version", economy_kit::metrics::VERSION)]), Some(1.0));
    for name in
        ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"]
    {
        assert!(value(name, &[]).is_some(), "{name}");
    }
    // New: the asset definition and the first adjustment.
    for (outcome, count) in [("new", 2.0), ("replayed", 1.0), ("conflict", 1.0)] {
        assert_eq!(
            value("economy_gateway_idempotency_outcomes_total", &[("outcome", outcome)]),
            Some(count),
            "{outcome}"
        );
    }
    assert!(value("economy_gateway_idempotency_snapshot_bytes_count", &[]).is_some_and(|count| count >= 2.0));
    // Every job runs once at start.
    for job in ["ledger_hold_expiry", "items_lock_expiry", "redemption_outbox", "market_recovery"] {
        let runs = value("economy_job_runs_total", &[("job", job), ("outcome", "ok")]);
        assert!(runs.is_some_and(|runs| runs >= 1.0), "{job} ran: {runs:?}");
    }
    for service in ["redemption", "market"] {
        assert_eq!(value("economy_outbox_pending", &[("service", service)]), Some(0.0), "{service} outbox");
    }
    // Pool use is labelled by database name (SQLite file stems here; PostgreSQL names on PG).
    assert!(
        metrics.lines().any(|line| line.starts_with("economy_db_pool_connections{") && line.contains("state=\"idle\""))
    );
    assert!(metrics.lines().any(|line| line.starts_with("economy_db_pool_max_connections{")));
    // The write-ahead log of each SQLite file (none on PostgreSQL).
    let on_postgres = std::env::var(economy_kit::testing::POSTGRES_URL_ENV).is_ok_and(|url| !url.is_empty());
    let ledger_wal = value("economy_sqlite_wal_bytes", &[("database", "ledger")]);
    assert_eq!(ledger_wal.is_some(), !on_postgres, "{ledger_wal:?}");
    // The reconciliations never run at start: their counters are at zero.
    for job in ["ledger_reconciliation", "ledger_incremental_reconciliation"] {
        assert_eq!(
            value("economy_job_runs_total", &[("job", job), ("outcome", "ok")]),
            Some(0.0),
            "{job} ran at start"
        );
    }
    assert_eq!(stack.stop().await?, Some(0));
    Ok(())
}

/// The gateway's upstreams, as `economy_gateway_upstream_serving{upstream}` names them.
const UPSTREAMS: [&str; 4] = ["ledger", "items", "redemption", "market"];

/// The metrics README.md's "Observability" table names (every backquoted name in a row's
/// first cell).
fn documented_metrics() -> anyhow::Result<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))?;
    let table = readme
        .lines()
        .skip_while(|line| !line.starts_with("| metric | type | labels | what |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'));
    let names: Vec<String> = table
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    anyhow::ensure!(names.len() > 40, "README's metric table not found: {names:?}");
    Ok(names)
}

/// The documented metrics missing from `scrape` or without their `# HELP` line.
fn undocumented_in(scrape: &str, names: &[&String]) -> Vec<String> {
    let present = |name: &str| {
        scrape.lines().any(|line| {
            let series = line.split([' ', '{']).next().unwrap_or_default();
            !line.starts_with('#') && (series == name || series.strip_prefix(name).is_some_and(is_histogram_suffix))
        })
    };
    let described = |name: &str| scrape.lines().any(|line| line.starts_with(&format!("# HELP {name} ")));
    names.iter().filter(|name| !present(name) || !described(name)).map(|name| (*name).clone()).collect()
}

/// The scraped metrics that break the conventions: a name outside `economy_`,
/// `grpc_server_` and `process_`, a counter not ending in `_total`, no `# HELP` line, or
/// missing from README's table (`documented`).
fn unconventional(scrape: &str, documented: &[String]) -> Vec<String> {
    let types = scrape.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '));
    types
        .filter(|(name, kind)| {
            let prefixed = ["economy_", "grpc_server_", "process_"].iter().any(|prefix| name.starts_with(prefix));
            let counter_named = *kind != "counter" || name.ends_with("_total");
            let described = scrape.lines().any(|line| line.starts_with(&format!("# HELP {name} ")));
            !(prefixed && counter_named && described && documented.iter().any(|known| known == name))
        })
        .map(|(name, kind)| format!("{name} ({kind})"))
        .collect()
}

fn is_histogram_suffix(suffix: &str) -> bool {
    ["_bucket", "_sum", "_count"].contains(&suffix)
}

/// Every documented counter and gauge exists, with HELP, in a scrape taken right after
/// start — except the RPC metrics, whose labels come with the first call (checked after
/// one), the items report's per-template gauge (series per template with instances) and,
/// on PostgreSQL, the SQLite-only ones. A few calls then move the service metrics: writes
/// by canonical operation and journal entries by business type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_exists_from_start() -> anyhow::Result<()> {
    let stack = Stack::start_with_env(&[("ECONOMY_METRICS__LISTEN", "127.0.0.1:0")]).await?;
    let url = stack
        .banner
        .iter()
        .find_map(|line| line.strip_prefix("  metrics ").map(|rest| rest.trim().to_owned()))
        .ok_or_else(|| anyhow::anyhow!("no metrics line in the banner: {:?}", stack.banner))?;
    let at_start = scrape(&url).await?;
    let documented = documented_metrics()?;
    let on_postgres = std::env::var(economy_kit::testing::POSTGRES_URL_ENV).is_ok_and(|url| !url.is_empty());
    let after_a_call = |name: &str| name.starts_with("grpc_server_");
    let with_data =
        |name: &str| name == "economy_items_by_status" || (on_postgres && name.starts_with("economy_sqlite_"));
    let expected: Vec<&String> = documented.iter().filter(|name| !after_a_call(name) && !with_data(name)).collect();
    assert_eq!(undocumented_in(&at_start, &expected), Vec::<String>::new(), "at start:\n{at_start}");

    stack.ok(&["asset", "define", "POINTS", "--name", "Points", "--kind", "currency"]).await?;
    let key = "idem_0190f0a4-2b9c-7d1e-8f00-00000000cafe";
    let adjust = ["adjust", "--user", "3", "--asset", "POINTS", "--amount", "5", "--reason", "x"];
    stack.ok(&[&adjust[..], &["--idempotency-key", key]].concat()).await?;
    stack.ok(&[&adjust[..], &["--idempotency-key", key]].concat()).await?;
    let mut metrics = String::new();
    // The last response's count lands when its body ends: allow a moment.
    for _ in 0..50 {
        metrics = scrape(&url).await?;
        let replayed = [("operation", "LEDGER_ADJUST_BALANCE"), ("outcome", "replayed")];
        let serving = |upstream| sample(&metrics, "economy_gateway_upstream_serving", &[("upstream", upstream)]);
        let all_serving = UPSTREAMS.iter().all(|upstream| serving(upstream) == Some(1.0));
        if sample(&metrics, "economy_gateway_operations_total", &replayed) == Some(1.0) && all_serving {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let rpcs: Vec<&String> = documented.iter().filter(|name| after_a_call(name)).collect();
    assert_eq!(undocumented_in(&metrics, &rpcs), Vec::<String>::new(), "after calls:\n{metrics}");
    assert_eq!(unconventional(&metrics, &documented), Vec::<String>::new());
    let value = |name: &str, labels: &[(&str, &str)]| sample(&metrics, name, labels);
    let operation = |outcome| [("operation", "LEDGER_ADJUST_BALANCE"), ("outcome", outcome)];
    assert_eq!(value("economy_gateway_operations_total", &operation("ok")), Some(1.0), "{metrics}");
    assert_eq!(value("economy_gateway_operations_total", &operation("replayed")), Some(1.0));
    assert_eq!(value("economy_gateway_operations_total", &operation("error")), Some(0.0));
    // Executed once: one entry; its replay wrote none.
    assert_eq!(value("economy_ledger_entries_total", &[("business_type", "ADMIN_ADJUST")]), Some(1.0));
    for upstream in UPSTREAMS {
        assert_eq!(value("economy_gateway_upstream_serving", &[("upstream", upstream)]), Some(1.0), "{upstream}");
    }
    assert_eq!(stack.stop().await?, Some(0));
    Ok(())
}
