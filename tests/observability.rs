//! The alert rules and dashboards of `deploy/observability/` against the code
//! (docs/operations.md, "Alerts and dashboards"):
//!
//! - every dashboard is Grafana dashboard JSON with a `datasource` variable that every
//!   panel and query uses;
//! - every PromQL expression of the dashboards (targets and variable queries) and of the
//!   alert rules parses (`promql-parser`), and every metric it selects (a histogram's
//!   `_bucket`, `_sum`, `_count` counting as the histogram) is exported, with HELP text, by
//!   a running `economy up` after a little traffic, with a sample for every label value
//!   a matcher names (SQLite; PostgreSQL when `ECONOMY_TEST_POSTGRES_URL` is set, where
//!   the SQLite-only `economy_sqlite_*` are not asked for);
//! - every alert has a severity, a summary, a description and a runbook section in
//!   docs/runbooks.md (and every section there is an alert's);
//! - `promtool check rules` and `promtool test rules` pass (promtool: Debian's `prometheus`
//!   package; the test fails without it in CI, `CI` set, and is skipped with a note
//!   elsewhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use economy_e2e::Stack;
use promql_parser::label::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn observability_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/observability")
}

fn runbooks_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbooks.md")
}

// ---------------------------------------------------------------------------------------
// The files
// ---------------------------------------------------------------------------------------

/// Every dashboard: file name -> JSON.
fn dashboards() -> Result<BTreeMap<String, Json>> {
    let dir = observability_dir().join("dashboards");
    let mut dashboards = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().context("no file name")?.to_string_lossy().into_owned();
        ensure!(name.ends_with(".json"), "deploy/observability/dashboards/{name} is not a .json dashboard");
        let text = std::fs::read_to_string(&path)?;
        let json = serde_json::from_str(&text).with_context(|| format!("{name} is not well-formed JSON"))?;
        dashboards.insert(name, json);
    }
    ensure!(dashboards.len() >= 3, "expected the overview, economy and jobs dashboards, found {dashboards:?}");
    Ok(dashboards)
}

/// The alert rules file: `groups`.
fn alert_groups() -> Result<Yaml> {
    let path = observability_dir().join("alerts.yaml");
    let text = std::fs::read_to_string(&path)?;
    let rules: Yaml = serde_norway::from_str(&text).context("alerts.yaml is not valid YAML")?;
    Ok(rules["groups"].clone())
}

/// Every alerting rule of alerts.yaml.
fn alert_rules() -> Result<Vec<Yaml>> {
    let groups = alert_groups()?;
    let groups = groups.as_sequence().context("alerts.yaml has no groups")?;
    let mut rules = Vec::new();
    for group in groups {
        let group_rules = group["rules"].as_sequence().context("a group without rules")?;
        rules.extend(group_rules.iter().cloned());
    }
    ensure!(!rules.is_empty(), "alerts.yaml has no rule");
    Ok(rules)
}

/// Every panel of a dashboard, those inside rows included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        found.push(panel);
        found.extend(panel["panels"].as_array().into_iter().flatten());
    }
    found
}

/// `(where, PromQL)` of every query of the dashboards and the alert rules. Grafana's
/// interval variables become a duration; other variables only stand in label values.
fn queries() -> Result<Vec<(String, String)>> {
    let mut queries = Vec::new();
    for (file, dashboard) in dashboards()? {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().with_context(|| format!("{file}: a target without expr"))?;
                queries.push((format!("{file}: {}", panel["title"]), grafana_to_promql(expr)));
            }
        }
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            if variable["type"] == "query" {
                let query = variable["query"]["query"].as_str().context("a query variable without query")?;
                let selector = label_values_selector(query)
                    .with_context(|| format!("{file}: variable {} is not label_values(…)", variable["name"]))?;
                queries.push((format!("{file}: variable {}", variable["name"]), grafana_to_promql(selector)));
            }
        }
    }
    for rule in alert_rules()? {
        let expr = rule["expr"].as_str().context("a rule without expr")?;
        queries.push((format!("alerts.yaml: {}", rule["alert"].as_str().unwrap_or("?")), expr.to_owned()));
    }
    Ok(queries)
}

fn grafana_to_promql(expr: &str) -> String {
    ["$__rate_interval", "$__interval", "$__range"].iter().fold(expr.to_owned(), |expr, var| expr.replace(var, "5m"))
}

/// The series selector of `label_values(<selector>, <label>)`.
fn label_values_selector(query: &str) -> Option<&str> {
    let inner = query.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, _label) = inner.rsplit_once(',')?;
    Some(selector.trim())
}

// ---------------------------------------------------------------------------------------
// PromQL
// ---------------------------------------------------------------------------------------

/// One selector of a query: its metric and the label values it asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Selection {
    metric: String,
    /// `(label, values)` of each `=` or `=~` matcher on a fixed value (a Grafana variable's
    /// matcher and negative matchers ask for nothing); values `None` when the regex is not
    /// a plain alternation of words.
    wanted: Vec<(String, Option<Vec<String>>)>,
}

/// Collects every selector of an expression.
#[derive(Default)]
struct Selections(BTreeSet<Selection>);

impl ExprVisitor for Selections {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let selector = match expr {
            Expr::VectorSelector(selector) => selector,
            Expr::MatrixSelector(matrix) => &matrix.vs,
            _ => return Ok(true),
        };
        let metric = selector.name.clone().ok_or_else(|| format!("a selector without a metric name: {selector}"))?;
        let wanted = selector.matchers.matchers.iter().filter_map(wanted_values).collect();
        self.0.insert(Selection { metric, wanted });
        Ok(true)
    }
}

/// What a matcher asks the scrape to show: `label = value`, or `label =~ a|b` (each of
/// `a`, `b`), or only the label (another regex); nothing for a negative matcher or a
/// Grafana variable.
fn wanted_values(matcher: &Matcher) -> Option<(String, Option<Vec<String>>)> {
    if matcher.name == METRIC_NAME || matcher.value.contains('$') {
        return None;
    }
    let plain = |value: &str| value.chars().all(|c| c.is_ascii_alphanumeric() || "_.|".contains(c));
    match &matcher.op {
        MatchOp::Equal => Some((matcher.name.clone(), Some(vec![matcher.value.clone()]))),
        MatchOp::Re(_) if plain(&matcher.value) => {
            Some((matcher.name.clone(), Some(matcher.value.split('|').map(str::to_owned).collect())))
        }
        MatchOp::Re(_) => Some((matcher.name.clone(), None)),
        MatchOp::NotEqual | MatchOp::NotRe(_) => None,
    }
}

/// Every selector of `expr`.
fn selections(expr: &str) -> Result<BTreeSet<Selection>, String> {
    let parsed = parser::parse(expr)?;
    let mut selections = Selections::default();
    walk_expr(&mut selections, &parsed)?;
    Ok(selections.0)
}

/// Every metric name `expr` selects.
fn selected_metrics(expr: &str) -> Result<BTreeSet<String>, String> {
    Ok(selections(expr)?.into_iter().map(|selection| selection.metric).collect())
}

/// Every selector of the dashboards and alert rules, with the queries that hold it.
fn queried_selections() -> Result<BTreeMap<Selection, Vec<String>>> {
    let mut found: BTreeMap<Selection, Vec<String>> = BTreeMap::new();
    for (place, expr) in queries()? {
        let selections = selections(&expr).map_err(|error| anyhow::anyhow!("{place}: {error}\n  {expr}"))?;
        ensure!(!selections.is_empty(), "{place} selects no metric: {expr}");
        for selection in selections {
            found.entry(selection).or_default().push(place.clone());
        }
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------
// The scrape
// ---------------------------------------------------------------------------------------

/// The gRPC code names `grpc_code` takes (go-grpc-prometheus' spelling,
/// docs/operations.md, "Observability"), whether or not a scrape shows them.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// A sample's labels.
type Labels = BTreeMap<String, String>;

/// What a scrape shows: `# TYPE` per family, `# HELP` families, every sample's labels.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    helped: BTreeSet<String>,
    samples: BTreeMap<String, Vec<Labels>>,
}

impl Exposition {
    fn parse(text: &str) -> Result<Self> {
        let mut exposition = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    exposition.types.insert(name.to_owned(), kind.trim().to_owned());
                }
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split_once(' ').map_or(rest, |(name, _)| name);
                exposition.helped.insert(name.to_owned());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let (name, labels) = sample_labels(line).with_context(|| format!("bad sample line {line}"))?;
                exposition.samples.entry(name).or_default().push(labels);
            }
        }
        Ok(exposition)
    }

    /// The family a selected name belongs to: a histogram's `_bucket`, `_sum` and
    /// `_count` are the histogram's (a summary's `_sum` and `_count` the summary's).
    fn family<'a>(&self, name: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                let kind = self.types.get(base).map(String::as_str);
                if kind == Some("histogram") || (suffix != "_bucket" && kind == Some("summary")) {
                    return base;
                }
            }
        }
        name
    }

    /// Why a selection finds nothing in this scrape: its metric is not exported, has no
    /// HELP text, or has no sample with a label value it asks for.
    fn problems(&self, selection: &Selection) -> Vec<String> {
        let name = selection.metric.as_str();
        let Some(samples) = self.samples.get(name) else { return vec![format!("{name} is not exported")] };
        let mut problems = Vec::new();
        let family = self.family(name);
        if !self.helped.contains(family) {
            problems.push(format!("{family} has no # HELP"));
        }
        for (label, values) in &selection.wanted {
            let has = |value: &str| samples.iter().any(|labels| labels.get(label).is_some_and(|found| found == value));
            match values {
                None if !samples.iter().any(|labels| labels.contains_key(label)) => {
                    problems.push(format!("{name} has no label {label}"));
                }
                None => {}
                Some(values) => {
                    for value in values {
                        let known =
                            if label == "grpc_code" { GRPC_CODES.contains(&value.as_str()) } else { has(value) };
                        if !known {
                            problems.push(format!("{name} has no sample with {label}=\"{value}\""));
                        }
                    }
                }
            }
        }
        problems
    }
}

/// `(name, labels)` of a sample line `name{a="b",…} value`.
fn sample_labels(line: &str) -> Option<(String, Labels)> {
    let Some((name, rest)) = line.split_once('{') else {
        return Some((line.split_whitespace().next()?.to_owned(), Labels::new()));
    };
    let mut labels = Labels::new();
    let mut rest = rest;
    while let Some((key, after)) = rest.split_once("=\"") {
        let (value, after) = quoted(after)?;
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = after;
        if rest.starts_with('}') {
            break;
        }
    }
    Some((name.to_owned(), labels))
}

/// The text up to the closing quote (escapes undone) and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

/// `GET http://<addr>/metrics`: the body of a 200 answer.
async fn scrape(url: &str) -> Result<String> {
    let addr = url.trim_start_matches("http://").trim_end_matches("/metrics");
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").with_context(|| format!("no HTTP answer: {response}"))?;
    ensure!(head.starts_with("HTTP/1.1 200"), "scrape failed: {head}");
    Ok(body.to_owned())
}

/// A little of everything through the gateway: writes, a refused call, a redemption.
async fn traffic(stack: &Stack) -> Result<()> {
    stack.ok(&["asset", "define", "POINTS", "--name", "Points", "--kind", "currency"]).await?;
    stack.ok(&["adjust", "--user", "2", "--asset", "POINTS", "--amount", "10", "--reason", "x"]).await?;
    let refused = stack.run(&["adjust", "--user", "2", "--asset", "NOPE", "--amount", "1", "--reason", "x"]).await?;
    ensure!(refused.code != Some(0), "an unknown asset should be refused: {refused:?}");
    stack.ok(&["balance", "--user", "2"]).await?;
    stack.ok(&["template", "define", "coffee", "--name", "Coffee", "--kind", "voucher", "--redeemable"]).await?;
    let granted = stack.ok(&["item", "grant", "--user", "2", "--template", "coffee", "--reason", "x"]).await?;
    let item = word_after(&granted.stdout, "item ")?;
    let created = stack.ok(&["--user-id", "2", "--role", "0", "redeem", "create", "--item", &item]).await?;
    let code = created.line_starting("code: ").context("no code")?.trim_start_matches("code: ").to_owned();
    stack.ok(&["--user-id", "7", "--role", "50", "redeem", "fulfill", &code]).await?;
    Ok(())
}

/// The word after the first `prefix` in `text`.
fn word_after(text: &str, prefix: &str) -> Result<String> {
    let (_, rest) = text.split_once(prefix).with_context(|| format!("no {prefix:?} in {text}"))?;
    Ok(rest.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Series that appear after the start: the RPC counts of the traffic (a response is
/// counted when its body ends) and the items report's per-template counts (its first
/// scheduled run, every minute here).
const AFTER_TRAFFIC: [&str; 2] = ["grpc_server_handled_total", "economy_items_by_status"];

/// The stack's settings for this test: the metrics endpoint, and the items report every
/// minute instead of daily.
const STACK_ENV: [(&str, &str); 2] =
    [("ECONOMY_METRICS__LISTEN", "127.0.0.1:0"), ("ECONOMY_ITEMS__REPORT_SCHEDULE", "* * * * *")];

/// Scrapes until every series of `AFTER_TRAFFIC` is there (at most three minutes: the
/// report runs at the next minute, and the one after when it ran before the traffic).
async fn scrape_after_traffic(url: &str) -> Result<Exposition> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let exposition = Exposition::parse(&scrape(url).await?)?;
        let missing: Vec<&str> =
            AFTER_TRAFFIC.into_iter().filter(|name| !exposition.samples.contains_key(*name)).collect();
        if missing.is_empty() {
            return Ok(exposition);
        }
        ensure!(tokio::time::Instant::now() < deadline, "no {missing:?} three minutes after the traffic");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn every_dashboard_is_grafana_json_on_the_datasource_variable() -> Result<()> {
    let mut uids = BTreeSet::new();
    for (file, dashboard) in dashboards()? {
        ensure!(dashboard["schemaVersion"].as_u64().is_some_and(|version| version >= 36), "{file}: schemaVersion");
        ensure!(dashboard["title"].as_str().is_some_and(|title| title.starts_with("Economy")), "{file}: title");
        let uid = dashboard["uid"].as_str().with_context(|| format!("{file}: no uid"))?;
        ensure!(uids.insert(uid.to_owned()), "{file}: uid {uid} is used twice");
        let variables = dashboard["templating"]["list"].as_array().with_context(|| format!("{file}: templating"))?;
        ensure!(
            variables
                .iter()
                .any(|var| var["name"] == "datasource" && var["type"] == "datasource" && var["query"] == "prometheus"),
            "{file}: no Prometheus `datasource` variable"
        );
        let mut ids = BTreeSet::new();
        let mut queries = 0;
        for panel in panels(&dashboard) {
            let title = &panel["title"];
            ensure!(panel["id"].as_u64().is_some_and(|id| ids.insert(id)), "{file}: panel {title} id not unique");
            ensure!(panel["gridPos"]["w"].as_u64().is_some(), "{file}: panel {title} has no gridPos");
            if panel["type"] == "row" {
                continue;
            }
            ensure!(panel["datasource"]["uid"] == "${datasource}", "{file}: panel {title} ignores $datasource");
            let targets =
                panel["targets"].as_array().with_context(|| format!("{file}: panel {title} has no targets"))?;
            ensure!(!targets.is_empty(), "{file}: panel {title} has no query");
            for target in targets {
                ensure!(target["expr"].is_string() && target["refId"].is_string(), "{file}: panel {title} target");
                ensure!(target["datasource"]["uid"] == "${datasource}", "{file}: panel {title} target datasource");
                queries += 1;
            }
        }
        ensure!(queries >= 10, "{file}: only {queries} queries");
    }
    Ok(())
}

#[test]
fn every_query_is_promql_on_the_projects_metric_names() -> Result<()> {
    for (selection, places) in queried_selections()? {
        let name = &selection.metric;
        ensure!(
            ["economy_", "grpc_server_", "process_"].iter().any(|prefix| name.starts_with(prefix)),
            "{name} (in {places:?}) is not a metric of the project"
        );
    }
    // A broken query is caught, not skipped.
    ensure!(selected_metrics("sum(rate(x[5m])").is_err(), "an unbalanced query should not parse");
    ensure!(
        selected_metrics("a_bucket / on (x) b + histogram_quantile(0.9, rate(c[5m]))")
            == Ok(["a_bucket", "b", "c"].map(str::to_owned).into()),
        "every selector is collected"
    );
    let parsed = selections(r#"a{x="1", y=~"p|q", z=~"r.*", w!="2", v=~"$var"}"#).map_err(anyhow::Error::msg)?;
    let wanted = &parsed.first().context("one selector")?.wanted;
    let expected = [("x", Some(vec!["1"])), ("y", Some(vec!["p", "q"])), ("z", None)].map(|(label, values)| {
        (label.to_owned(), values.map(|values| values.into_iter().map(str::to_owned).collect()))
    });
    ensure!(*wanted == expected, "label values asked for: {wanted:?}");
    Ok(())
}

#[test]
fn a_scrape_line_reads_as_its_name_and_labels() -> Result<()> {
    let (name, labels) = sample_labels(r#"x_total{a="b",c="d\"e,f"} 1"#).context("parsed")?;
    ensure!(name == "x_total", "{name}");
    let expected: Labels = [("a", "b"), ("c", "d\"e,f")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
    ensure!(labels == expected, "{labels:?}");
    ensure!(sample_labels("up 1") == Some(("up".to_owned(), Labels::new())), "a sample without labels");
    let exposition =
        Exposition::parse("# HELP h_seconds x\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"1\"} 0\n")?;
    ensure!(exposition.family("h_seconds_bucket") == "h_seconds", "a histogram's bucket is the histogram's");
    let wanted = |label: &str, value: &str| Selection {
        metric: "h_seconds_bucket".into(),
        wanted: vec![(label.to_owned(), Some(vec![value.to_owned()]))],
    };
    ensure!(exposition.problems(&wanted("le", "1")).is_empty(), "le=1 is there");
    ensure!(exposition.problems(&wanted("le", "2")).len() == 1, "le=2 is not");
    ensure!(exposition.problems(&wanted("grpc_code", "Internal")).is_empty(), "a gRPC code name is known");
    ensure!(exposition.problems(&wanted("grpc_code", "INTERNAL")).len() == 1, "tonic's spelling is not");
    Ok(())
}

#[test]
fn every_alert_has_a_severity_annotations_and_a_runbook_section() -> Result<()> {
    let runbooks = std::fs::read_to_string(runbooks_file())?;
    let sections: BTreeSet<&str> = runbooks.lines().filter_map(|line| line.strip_prefix("## ")).collect();
    let mut alerts = BTreeSet::new();
    for rule in alert_rules()? {
        let name = rule["alert"].as_str().context("a recording rule in alerts.yaml: keep it alerts only")?;
        ensure!(alerts.insert(name.to_owned()), "alert {name} is defined twice");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        ensure!(["critical", "warning", "info"].contains(&severity), "{name}: severity {severity:?}");
        for annotation in ["summary", "description"] {
            ensure!(
                rule["annotations"][annotation].as_str().is_some_and(|text| !text.trim().is_empty()),
                "{name}: no {annotation}"
            );
        }
        let runbook = rule["annotations"]["runbook_url"].as_str().unwrap_or_default();
        ensure!(
            runbook == format!("docs/runbooks.md#{}", name.to_lowercase()),
            "{name}: runbook_url {runbook:?} should be docs/runbooks.md#{}",
            name.to_lowercase()
        );
        ensure!(sections.contains(name), "docs/runbooks.md has no `## {name}` section");
    }
    let orphans: Vec<&&str> = sections.iter().filter(|section| !alerts.contains(**section)).collect();
    ensure!(orphans.is_empty(), "docs/runbooks.md sections without an alert: {orphans:?}");
    Ok(())
}

/// `promtool`, or why the check is skipped; in CI (`CI` set) a missing promtool fails.
fn promtool() -> Result<Option<&'static str>> {
    let works = Command::new("promtool").arg("--version").output().is_ok_and(|output| output.status.success());
    if works {
        return Ok(Some("promtool"));
    }
    ensure!(
        std::env::var_os("CI").is_none(),
        "promtool is missing in CI: .ci/run installs Debian's `prometheus` package, which ships it"
    );
    eprintln!("promtool is not installed (apt-get install prometheus): the rules' promtool checks skipped");
    Ok(None)
}

fn run_promtool(promtool: &str, args: &[&str]) -> Result<()> {
    let output = Command::new(promtool).args(args).current_dir(observability_dir()).output()?;
    ensure!(
        output.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[test]
fn promtool_checks_the_rules_and_passes_their_unit_tests() -> Result<()> {
    let Some(promtool) = promtool()? else { return Ok(()) };
    run_promtool(promtool, &["check", "rules", "alerts.yaml"])?;
    run_promtool(promtool, &["test", "rules", "alerts.test.yaml"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queried_metric_is_exported_by_a_running_stack() -> Result<()> {
    let selections = queried_selections()?;
    let stack = Stack::start_with_env(&STACK_ENV).await?;
    let url = stack
        .banner
        .iter()
        .find_map(|line| line.strip_prefix("  metrics ").map(|rest| rest.trim().to_owned()))
        .with_context(|| format!("no metrics line in the banner: {:?}", stack.banner))?;
    traffic(&stack).await?;
    let exposition = scrape_after_traffic(&url).await?;
    let on_postgres = std::env::var(economy_kit::testing::POSTGRES_URL_ENV).is_ok_and(|url| !url.is_empty());
    let mut problems = BTreeSet::new();
    for (selection, places) in &selections {
        // A SQLite file's write-ahead log has no PostgreSQL counterpart.
        if on_postgres && selection.metric.starts_with("economy_sqlite_") {
            continue;
        }
        for problem in exposition.problems(selection) {
            problems.insert(format!("{problem} (queried by {places:?})"));
        }
    }
    ensure!(problems.is_empty(), "queried but not exported:\n{}", problems.into_iter().collect::<Vec<_>>().join("\n"));
    ensure!(stack.stop().await? == Some(0), "economy up should stop cleanly");
    Ok(())
}
