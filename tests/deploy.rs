//! The deployment files under `deploy/` checked against the code, without network or
//! cluster: every YAML file parses; the compose file, the Kubernetes base and the production
//! overlay run every service on the port its `*Config::default().listen` names, probe the
//! health name it registers (`SERVICE_NAME`), load a TOML configuration the real config
//! structs accept, and reference only Secrets, keys, ConfigMaps and files that exist; the
//! kustomization lists every file of its folder. The image builds from package registries
//! only (fully qualified base images, no download), the compose health checks are
//! `economy health` and run against a live `economy up`, and the Kubernetes probes are
//! the kubelet's native `grpc` probes. The base's ServiceMonitor scrapes every pod's
//! metrics port through ClusterIP Services, and its PrometheusRule holds exactly the
//! rules of `deploy/observability/alerts.yaml`.
//!
//! When `kubectl` is installed, the base and the overlay are also rendered with
//! `kubectl kustomize` (offline) and the result is checked; when `kubernetes-validate`
//! (PyPI, bundled schemas, offline) is installed, the renders are validated against the
//! Kubernetes schemas (the Prometheus Operator's custom resources left out: it has no
//! schema for them). Either tool missing skips that part with a note.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use economy_kit::identity::IdentityConfig;
use economy_kit::server::ServerLimits;
use economy_kit::telemetry::LogConfig;
use serde::{Deserialize, Serialize};
use serde_norway::Value;

/// A service binary's settings (`[<section>]`, `[identity]`, `[server]`, `[log]`), as its
/// `main.rs` loads them, rendered as JSON for generic checks.
macro_rules! settings {
    ($settings:ident, $section:ident, $config:ty) => {
        #[derive(Debug, Default, Serialize, Deserialize)]
        #[serde(default)]
        struct $settings {
            $section: $config,
            identity: IdentityConfig,
            server: ServerLimits,
            log: LogConfig,
        }

        impl $settings {
            /// Defaults, then `file`, then `ECONOMY_*` (what the binary does at start).
            fn load(file: &Path) -> Result<serde_json::Value> {
                let settings: Self = economy_kit::config::load(Some(file))
                    .with_context(|| format!("{} does not load as the service's settings", file.display()))?;
                Ok(serde_json::to_value(settings)?)
            }

            /// The built-in defaults.
            fn defaults() -> Result<serde_json::Value> {
                Ok(serde_json::to_value(Self::default())?)
            }
        }
    };
}

settings!(GatewaySettings, gateway, economy_gateway::config::GatewayConfig);
settings!(LedgerSettings, ledger, economy_ledger::LedgerConfig);
settings!(ItemsSettings, items, economy_items::ItemsConfig);
settings!(RedemptionSettings, redemption, economy_redemption::RedemptionConfig);
settings!(MarketSettings, market, economy_market::MarketConfig);

/// One service as the code defines it.
struct Service {
    /// Short name: configuration section, compose service, `economy-<name>` binary and
    /// Kubernetes objects.
    name: &'static str,
    /// Name it reports in `grpc.health.v1` (`SERVICE_NAME`).
    health: &'static str,
    /// Port of its default `listen` address.
    port: u16,
    /// Loads a TOML file as the binary would.
    load: fn(&Path) -> Result<serde_json::Value>,
    /// The binary's default settings.
    defaults: fn() -> Result<serde_json::Value>,
}

impl Service {
    fn binary(&self) -> String {
        format!("economy-{}", self.name)
    }

    /// `ECONOMY_<SECTION>__<KEY>`.
    fn env(&self, key: &str) -> String {
        format!("ECONOMY_{}__{}", self.name.to_uppercase(), key)
    }
}

/// Port of a `host:port` address.
fn port_of(address: &str) -> Result<u16> {
    let (_, port) = address.rsplit_once(':').with_context(|| format!("{address} has no port"))?;
    port.parse().with_context(|| format!("bad port in {address}"))
}

/// The five services, with ports and health names read from the code.
fn services() -> Result<Vec<Service>> {
    Ok(vec![
        Service {
            name: "gateway",
            health: economy_gateway::SERVICE_NAME,
            port: port_of(&economy_gateway::config::GatewayConfig::default().listen)?,
            load: GatewaySettings::load,
            defaults: GatewaySettings::defaults,
        },
        Service {
            name: "ledger",
            health: economy_ledger::SERVICE_NAME,
            port: port_of(&economy_ledger::LedgerConfig::default().listen)?,
            load: LedgerSettings::load,
            defaults: LedgerSettings::defaults,
        },
        Service {
            name: "items",
            health: economy_items::SERVICE_NAME,
            port: port_of(&economy_items::ItemsConfig::default().listen)?,
            load: ItemsSettings::load,
            defaults: ItemsSettings::defaults,
        },
        Service {
            name: "redemption",
            health: economy_redemption::SERVICE_NAME,
            port: port_of(&economy_redemption::RedemptionConfig::default().listen)?,
            load: RedemptionSettings::load,
            defaults: RedemptionSettings::defaults,
        },
        Service {
            name: "market",
            health: economy_market::SERVICE_NAME,
            port: port_of(&economy_market::MarketConfig::default().listen)?,
            load: MarketSettings::load,
            defaults: MarketSettings::defaults,
        },
    ])
}

fn service_by_name<'a>(services: &'a [Service], name: &str) -> Result<&'a Service> {
    services.iter().find(|service| service.name == name).with_context(|| format!("no service named {name}"))
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn base_dir() -> PathBuf {
    deploy_dir().join("k8s/base")
}

fn production_dir() -> PathBuf {
    deploy_dir().join("k8s/overlays/production")
}

// ---------------------------------------------------------------------------------------
// YAML helpers
// ---------------------------------------------------------------------------------------

/// Every non-empty document of a YAML text, with merge keys (`<<:`) applied.
fn parse_documents(text: &str, origin: &str) -> Result<Vec<Value>> {
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let mut value = Value::deserialize(document).with_context(|| format!("{origin} is not valid YAML"))?;
        value.apply_merge().with_context(|| format!("{origin}: bad merge key"))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn documents(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_documents(&text, &path.display().to_string())
}

fn document(path: &Path) -> Result<Value> {
    let mut documents = documents(path)?;
    ensure!(documents.len() == 1, "{} should hold one YAML document, not {}", path.display(), documents.len());
    Ok(documents.remove(0))
}

fn text<'a>(value: &'a Value, what: &str) -> Result<&'a str> {
    value.as_str().with_context(|| format!("{what} should be a string, is {value:?}"))
}

fn number(value: &Value, what: &str) -> Result<u64> {
    value.as_u64().with_context(|| format!("{what} should be a number, is {value:?}"))
}

fn list<'a>(value: &'a Value, what: &str) -> Result<&'a [Value]> {
    value.as_sequence().map(Vec::as_slice).with_context(|| format!("{what} should be a list, is {value:?}"))
}

fn texts(value: &Value, what: &str) -> Result<Vec<String>> {
    list(value, what)?.iter().map(|item| text(item, what).map(str::to_owned)).collect()
}

/// A string-to-string mapping (labels, compose `environment`).
fn string_map(value: &Value, what: &str) -> Result<BTreeMap<String, String>> {
    let mapping = value.as_mapping().with_context(|| format!("{what} should be a mapping, is {value:?}"))?;
    mapping
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                other => bail!("{what}: value of {key:?} should be a scalar, is {other:?}"),
            };
            Ok((text(key, what)?.to_owned(), value))
        })
        .collect()
}

/// Every file below `dir` (relative paths, `/`-separated).
fn files_below(dir: &Path) -> Result<BTreeSet<String>> {
    fn walk(root: &Path, dir: &Path, found: &mut BTreeSet<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, found)?;
            } else {
                let relative = path.strip_prefix(root)?;
                found.insert(relative.to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut found = BTreeSet::new();
    walk(dir, dir, &mut found)?;
    Ok(found)
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

// ---------------------------------------------------------------------------------------
// Kubernetes helpers
// ---------------------------------------------------------------------------------------

/// Kubernetes objects by `(kind, name)`.
type Objects = BTreeMap<(String, String), Value>;

fn index(documents: Vec<Value>, origin: &str) -> Result<Objects> {
    let mut objects = Objects::new();
    for object in documents {
        let kind = text(&object["kind"], &format!("{origin}: kind"))?.to_owned();
        let name = text(&object["metadata"]["name"], &format!("{origin}: {kind} name"))?.to_owned();
        ensure!(object["apiVersion"].is_string(), "{origin}: {kind}/{name} has no apiVersion");
        let previous = objects.insert((kind.clone(), name.clone()), object);
        ensure!(previous.is_none(), "{origin}: {kind}/{name} is defined twice");
    }
    Ok(objects)
}

fn object<'a>(objects: &'a Objects, kind: &str, name: &str) -> Result<&'a Value> {
    objects.get(&(kind.to_owned(), name.to_owned())).with_context(|| format!("no {kind} named {name}"))
}

fn objects_of<'a>(objects: &'a Objects, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
    objects.iter().filter(move |((object_kind, _), _)| object_kind == kind).map(|((_, name), value)| (name, value))
}

/// The base's kustomization.
struct Kustomization {
    resources: Vec<String>,
    /// ConfigMap generators: name -> (files, literals).
    generators: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

fn kustomization(dir: &Path) -> Result<(Value, Kustomization)> {
    let root = document(&dir.join("kustomization.yaml"))?;
    ensure!(text(&root["kind"], "kind")? == "Kustomization", "{} is not a Kustomization", dir.display());
    let resources = texts(&root["resources"], "resources")?;
    let mut generators = BTreeMap::new();
    if let Some(entries) = root["configMapGenerator"].as_sequence() {
        for entry in entries {
            let name = text(&entry["name"], "configMapGenerator name")?.to_owned();
            let files = if entry["files"].is_null() { Vec::new() } else { texts(&entry["files"], "files")? };
            let literals =
                if entry["literals"].is_null() { Vec::new() } else { texts(&entry["literals"], "literals")? };
            generators.insert(name, (files, literals));
        }
    }
    Ok((root, Kustomization { resources, generators }))
}

/// Every object of the base's `resources`.
fn base_objects() -> Result<(Kustomization, Objects)> {
    let (_, kustomization) = kustomization(&base_dir())?;
    let mut all = Vec::new();
    for resource in &kustomization.resources {
        all.extend(documents(&base_dir().join(resource))?);
    }
    let objects = index(all, "deploy/k8s/base")?;
    Ok((kustomization, objects))
}

/// The env var `name` of a container.
fn env_var<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"].as_sequence()?.iter().find(|var| var["name"].as_str() == Some(name))
}

/// `(secret, key, optional)` of an env var read from a Secret.
fn secret_ref(var: &Value) -> Option<(String, String, bool)> {
    let reference = &var["valueFrom"]["secretKeyRef"];
    Some((
        reference["name"].as_str()?.to_owned(),
        reference["key"].as_str()?.to_owned(),
        reference["optional"].as_bool() == Some(true),
    ))
}

/// Keys of each Secret (`data` and `stringData`).
fn secret_keys(objects: &Objects) -> BTreeMap<String, BTreeSet<String>> {
    objects_of(objects, "Secret")
        .map(|(name, secret)| {
            let keys = ["data", "stringData"]
                .iter()
                .filter_map(|field| secret[*field].as_mapping())
                .flat_map(|mapping| mapping.keys().filter_map(Value::as_str).map(str::to_owned))
                .collect();
            (name.clone(), keys)
        })
        .collect()
}

/// Every `selector` label is on the pod.
fn selects(selector: &Value, pod_labels: &BTreeMap<String, String>, what: &str) -> Result<()> {
    let selector = string_map(selector, what)?;
    ensure!(!selector.is_empty(), "{what} is empty");
    for (key, value) in &selector {
        ensure!(pod_labels.get(key) == Some(value), "{what} {key}={value} does not select the pods ({pod_labels:?})");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Configuration helpers
// ---------------------------------------------------------------------------------------

/// Dotted paths of every leaf of a JSON value (arrays are leaves).
fn leaf_paths(value: &serde_json::Value, prefix: &str, paths: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                leaf_paths(child, &path, paths);
            }
        }
        _ => paths.push(prefix.to_owned()),
    }
}

fn json_at<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(value, |value, key| value.get(key))
}

/// The TOML file as written (no defaults), as JSON.
fn raw_toml(file: &Path) -> Result<serde_json::Value> {
    let path = file.to_str().with_context(|| format!("{} is not UTF-8", file.display()))?;
    config::Config::builder()
        .add_source(config::File::new(path, config::FileFormat::Toml))
        .build()?
        .try_deserialize()
        .with_context(|| format!("{} is not valid TOML", file.display()))
}

/// Every `http://host:port` string of a JSON value, with its path.
fn http_urls(value: &serde_json::Value, prefix: &str, found: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                http_urls(child, &format!("{prefix}.{key}"), found);
            }
        }
        serde_json::Value::String(text) if text.starts_with("http://") => found.push((prefix.to_owned(), text.clone())),
        _ => {}
    }
}

/// Paths of the settings that name another service (`*_url` but the database, and the
/// gateway's upstreams), from the defaults.
fn peer_url_paths(defaults: &serde_json::Value, section: &str) -> Vec<String> {
    let mut found = Vec::new();
    http_urls(&defaults[section], section, &mut found);
    found.into_iter().map(|(path, _)| path).collect()
}

/// `host` and port of `http://host:port`.
fn http_host_port(url: &str) -> Result<(String, u16)> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url} is not http://"))?;
    let authority = rest.trim_end_matches('/');
    let (host, _) = authority.rsplit_once(':').with_context(|| format!("{url} has no port"))?;
    Ok((host.to_owned(), port_of(authority)?))
}

/// Checks a service's configuration file for Kubernetes: it loads into the real settings,
/// names only keys the settings have, listens on `0.0.0.0:<default port>`, holds no
/// secret, and points every peer URL at `http://economy-<peer>:<peer port>`. Returns the
/// metrics port it configures, if any.
fn check_k8s_config(service: &Service, services: &[Service], file: &Path) -> Result<Option<u16>> {
    let name = service.name;
    let loaded = (service.load)(file)?;
    let defaults = (service.defaults)()?;
    let raw = raw_toml(file)?;
    let mut paths = Vec::new();
    leaf_paths(&raw, "", &mut paths);
    let mut metrics_port = None;
    for path in paths {
        if path == "metrics.listen" {
            let listen = json_at(&raw, &path).and_then(serde_json::Value::as_str).unwrap_or_default();
            metrics_port = Some(port_of(listen)?);
            continue;
        }
        ensure!(json_at(&defaults, &path).is_some(), "{}: `{path}` is not a setting of economy-{name}", file.display());
    }
    let listen = loaded[name]["listen"].as_str().unwrap_or_default();
    ensure!(listen == format!("0.0.0.0:{}", service.port), "{}: {name}.listen is {listen}", file.display());
    ensure!(
        loaded[name]["database_url"] == defaults[name]["database_url"],
        "{}: the database URL is a secret: set it from a Secret, not in the ConfigMap",
        file.display()
    );
    ensure!(
        loaded["identity"]["secret"].as_str() == Some(""),
        "{}: the identity secret must come from a Secret",
        file.display()
    );
    if name == "gateway" {
        let auth = &loaded["gateway"]["auth"];
        for key in ["hs256_secret", "rs256_public_key_pem", "eddsa_public_key_pem"] {
            ensure!(auth[key].as_str() == Some(""), "{}: gateway.auth.{key} must come from a Secret", file.display());
        }
    }
    for path in peer_url_paths(&defaults, name) {
        let url = json_at(&loaded, &path).and_then(serde_json::Value::as_str).unwrap_or_default();
        let (host, port) = http_host_port(url).with_context(|| format!("{}: {path}", file.display()))?;
        let peer = host.strip_prefix("economy-").with_context(|| format!("{}: {path} = {url}", file.display()))?;
        let peer = service_by_name(services, peer).with_context(|| format!("{}: {path} = {url}", file.display()))?;
        ensure!(port == peer.port, "{}: {path} = {url}, but {} listens on {}", file.display(), peer.name, peer.port);
    }
    Ok(metrics_port)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn every_yaml_file_under_deploy_parses() -> Result<()> {
    let files = files_below(&deploy_dir())?;
    let yaml: Vec<&String> = files.iter().filter(|file| is_yaml(file)).collect();
    ensure!(yaml.len() >= 10, "expected the compose file, the collector config and the manifests, found {yaml:?}");
    for file in yaml {
        let parsed = documents(&deploy_dir().join(file))?;
        ensure!(!parsed.is_empty(), "deploy/{file} has no YAML document");
    }
    Ok(())
}

#[test]
fn the_dockerfile_builds_and_ships_every_binary() -> Result<()> {
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile"))?;
    for service in services()? {
        ensure!(
            dockerfile.contains(&format!("-p {}", service.binary())),
            "the Dockerfile does not build {}",
            service.binary()
        );
        ensure!(dockerfile.contains(&service.binary()), "the Dockerfile does not copy {}", service.binary());
    }
    ensure!(
        dockerfile.contains("-p economy ") && dockerfile.contains(" economy; do"),
        "the image needs the `economy` CLI for `economy health`"
    );
    ensure!(dockerfile.contains("USER 10001:10001"), "the runtime image must run as the numeric non-root user");
    ensure!(dockerfile.matches("FROM ").count() >= 2, "the Dockerfile should be multi-stage");
    Ok(())
}

/// True when `image` names its registry (`docker.io/library/rust:…`, `registry.example.com/x`,
/// `localhost:5000/x`): its first path segment is a host, with a dot or a port.
fn fully_qualified(image: &str) -> bool {
    image.split_once('/').is_some_and(|(host, _)| host.contains('.') || host.contains(':') || host == "localhost")
}

#[test]
fn the_dockerfile_reaches_only_package_registries() -> Result<()> {
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile"))?;
    // Instructions only: comments may name URLs.
    let instructions: Vec<&str> =
        dockerfile.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).collect();
    let from: Vec<&str> = instructions.iter().filter_map(|line| line.strip_prefix("FROM ")).collect();
    ensure!(!from.is_empty(), "no FROM line");
    for stage in from {
        let image = stage.split_whitespace().next().unwrap_or_default();
        let is_stage = instructions.iter().any(|line| line.ends_with(&format!(" AS {image}")));
        ensure!(
            is_stage || fully_qualified(image),
            "base image `{image}` should be fully qualified (docker.io/library/…)"
        );
    }
    for line in &instructions {
        for word in ["curl", "wget", "http://", "https://", "git clone", "grpc_health_probe"] {
            ensure!(!line.contains(word), "the Dockerfile downloads outside the package registries: `{line}`");
        }
        ensure!(!line.starts_with("ADD "), "ADD may fetch URLs; use COPY: `{line}`");
    }
    ensure!(!dockerfile.contains("# syntax="), "a syntax directive pulls a frontend image at build time");
    Ok(())
}

#[test]
fn postgres_init_creates_one_database_per_service() -> Result<()> {
    let init = std::fs::read_to_string(deploy_dir().join("postgres/init.sql"))?;
    for service in services()? {
        let database = format!("economy_{}", service.name);
        ensure!(
            init.contains(&format!("CREATE DATABASE {database} OWNER {database};")),
            "postgres/init.sql does not create {database} owned by its own role"
        );
        ensure!(init.contains(&format!("CREATE ROLE {database} LOGIN")), "postgres/init.sql lacks role {database}");
    }
    Ok(())
}

#[test]
fn compose_runs_every_service_as_the_code_expects() -> Result<()> {
    let services = services()?;
    let compose = document(&deploy_dir().join("compose.yaml"))?;
    let init = std::fs::read_to_string(deploy_dir().join("postgres/init.sql"))?;
    let declared = compose["services"].as_mapping().context("compose.yaml has no services")?;
    let mut expected: BTreeSet<&str> = services.iter().map(|service| service.name).collect();
    expected.extend(["postgres", "otel-collector"]);
    let names: BTreeSet<&str> = declared.keys().filter_map(Value::as_str).collect();
    ensure!(names == expected, "compose services {names:?}, expected {expected:?}");

    for (name, entry) in declared {
        let image = entry["image"].as_str().unwrap_or("${ECONOMY_IMAGE:-economy:dev}");
        // The services' own image is the one built from deploy/Dockerfile, named by `build:`.
        ensure!(
            image.starts_with("${ECONOMY_IMAGE") || fully_qualified(image),
            "compose service {name:?}: image `{image}` should be fully qualified (docker.io/…)"
        );
    }
    let collector = &compose["services"]["otel-collector"];
    ensure!(
        text(&collector["image"], "otel-collector image")?
            .starts_with("docker.io/otel/opentelemetry-collector-contrib:"),
        "the collector should be the contrib image"
    );
    ensure!(
        texts(&collector["volumes"], "otel-collector volumes")?
            .iter()
            .any(|volume| volume.starts_with("./otel-collector.yaml:")),
        "the collector should mount deploy/otel-collector.yaml"
    );
    let postgres = &compose["services"]["postgres"];
    ensure!(
        texts(&postgres["volumes"], "postgres volumes")?
            .iter()
            .any(|volume| volume.starts_with("./postgres/init.sql:")),
        "postgres should run deploy/postgres/init.sql"
    );
    ensure!(postgres["ports"].is_null(), "PostgreSQL must not be published");

    for service in &services {
        let name = service.name;
        let entry = &compose["services"][name];
        let what = format!("compose service {name}");
        let command = texts(&entry["command"], &format!("{what} command"))?;
        ensure!(command.first() == Some(&service.binary()), "{what} should run {}", service.binary());
        let env = string_map(&entry["environment"], &format!("{what} environment"))?;
        let listen =
            env.get(&service.env("LISTEN")).with_context(|| format!("{what}: no {}", service.env("LISTEN")))?;
        ensure!(
            *listen == format!("0.0.0.0:{}", service.port),
            "{what} listens on {listen}, not 0.0.0.0:{}",
            service.port
        );
        let database = env
            .get(&service.env("DATABASE_URL"))
            .with_context(|| format!("{what}: no {}", service.env("DATABASE_URL")))?;
        let database_name = format!("economy_{name}");
        ensure!(
            database.starts_with(&format!("postgres://{database_name}:"))
                && database.ends_with(&format!("@postgres:5432/{database_name}")),
            "{what}: database URL {database} should be {database_name}'s own database and role"
        );
        ensure!(init.contains(&format!("CREATE DATABASE {database_name} ")), "{database_name} is not created");
        ensure!(env.contains_key("ECONOMY_IDENTITY__SECRET"), "{what} needs the shared identity secret");
        ensure!(
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(String::as_str) == Some("http://otel-collector:4317"),
            "{what} should export OTLP to the collector"
        );
        ensure!(env.get("OTEL_SERVICE_NAME") == Some(&service.binary()), "{what}: OTEL_SERVICE_NAME");
        let depends = entry["depends_on"].as_mapping().with_context(|| format!("{what}: no depends_on"))?;
        ensure!(depends.contains_key("postgres"), "{what} should wait for postgres");

        // Every peer URL of the code's settings is set, to the peer's compose name and port.
        let defaults = (service.defaults)()?;
        for path in peer_url_paths(&defaults, name) {
            let key = path.split('.').skip(1).map(str::to_uppercase).collect::<Vec<_>>().join("__");
            let variable = service.env(&key);
            let url = env.get(&variable).with_context(|| format!("{what}: {variable} ({path}) is not set"))?;
            let (host, port) = http_host_port(url)?;
            let peer = service_named(&services, &host).with_context(|| format!("{what}: {variable} = {url}"))?;
            ensure!(port == peer.port, "{what}: {variable} = {url}, but {host} listens on {}", peer.port);
        }

        // Health: `economy health` (the gRPC health protocol), on the service's port, for
        // its own name.
        let test = compose_health_check(&compose, name)?;
        let expected = ["economy", "health", &format!("127.0.0.1:{}", service.port), "--service", service.health];
        ensure!(test == expected, "{what}: health check {test:?}, expected {expected:?}");

        // Only the gateway is published.
        if name == "gateway" {
            let ports = texts(&entry["ports"], "gateway ports")?;
            ensure!(ports.len() == 1, "the gateway publishes one port, not {ports:?}");
            ensure!(ports[0].ends_with(&format!(":{}", service.port)), "gateway port mapping {}", ports[0]);
            ensure!(env.contains_key("ECONOMY_GATEWAY__AUTH__HS256_SECRET"), "the gateway needs a token key");
        } else {
            ensure!(entry["ports"].is_null(), "{what} must not be published");
            let expose = texts(&entry["expose"], &format!("{what} expose"))?;
            ensure!(expose.contains(&service.port.to_string()), "{what} should expose {}", service.port);
        }
    }
    Ok(())
}

/// The command of compose service `name`'s health check, without its leading `CMD`.
fn compose_health_check(compose: &Value, name: &str) -> Result<Vec<String>> {
    let test =
        texts(&compose["services"][name]["healthcheck"]["test"], &format!("compose service {name} healthcheck"))?;
    ensure!(test.first().map(String::as_str) == Some("CMD"), "{name}: health check should be exec form (CMD …)");
    Ok(test[1..].to_vec())
}

/// The compose health checks, run with the built `economy` binary against a live `economy
/// up`: each service's check (its port swapped for the one the stack printed) answers
/// SERVING and exits 0; the same check for a name the server does not serve exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_health_checks_pass_against_a_live_stack() -> Result<()> {
    let compose = document(&deploy_dir().join("compose.yaml"))?;
    let stack = economy_e2e::Stack::start().await?;
    let binary = economy_e2e::economy_binary()?;
    for service in services()? {
        let mut check = compose_health_check(&compose, service.name)?;
        ensure!(check.first().map(String::as_str) == Some("economy"), "{}: {check:?}", service.name);
        let banner = stack
            .banner
            .iter()
            .find(|line| line.trim_start().starts_with(&format!("{} ", service.name)))
            .with_context(|| format!("no {} line in the banner {:?}", service.name, stack.banner))?;
        let url = banner.split_whitespace().nth(1).context("banner line without address")?;
        let live = url.strip_prefix("http://").context("banner address without http://")?;
        let address = check.iter_mut().find(|word| word.starts_with("127.0.0.1:")).context("no address")?;
        *address = live.to_owned();
        let run = |args: &[String]| Command::new(&binary).args(args).output();
        let output = run(&check[1..])?;
        ensure!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "SERVING",
            "{}: `economy {}` answered {output:?}",
            service.name,
            check[1..].join(" ")
        );
        let service_flag = check.iter().position(|word| word == "--service").context("no --service")?;
        check[service_flag + 1] = "economy.nothing.v1.Unknown".into();
        let output = run(&check[1..])?;
        ensure!(output.status.code() == Some(1), "{}: an unknown name should fail: {output:?}", service.name);
    }
    ensure!(stack.stop().await? == Some(0), "economy up should stop cleanly");
    Ok(())
}

/// The service a compose host name or a Kubernetes Service name stands for.
fn service_named<'a>(services: &'a [Service], host: &str) -> Result<&'a Service> {
    service_by_name(services, host.strip_prefix("economy-").unwrap_or(host))
}

#[test]
fn the_collector_receives_otlp_grpc_and_prints_it() -> Result<()> {
    let collector = document(&deploy_dir().join("otel-collector.yaml"))?;
    let endpoint = text(&collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"], "otlp grpc endpoint")?;
    ensure!(endpoint == "0.0.0.0:4317", "OTLP gRPC should be received on 0.0.0.0:4317, not {endpoint}");
    ensure!(!collector["exporters"]["debug"].is_null(), "the development collector exports to `debug`");
    for signal in ["traces", "metrics", "logs"] {
        let pipeline = &collector["service"]["pipelines"][signal];
        ensure!(texts(&pipeline["receivers"], signal)?.contains(&"otlp".to_owned()), "{signal} pipeline lacks otlp");
        ensure!(texts(&pipeline["exporters"], signal)?.contains(&"debug".to_owned()), "{signal} pipeline lacks debug");
    }
    Ok(())
}

#[test]
fn the_kustomize_base_lists_every_file() -> Result<()> {
    let (_, kustomization) = kustomization(&base_dir())?;
    let files = files_below(&base_dir())?;
    let manifests: BTreeSet<String> =
        files.iter().filter(|file| is_yaml(file) && *file != "kustomization.yaml").cloned().collect();
    let listed: BTreeSet<String> = kustomization.resources.iter().cloned().collect();
    ensure!(listed == manifests, "kustomization resources {listed:?} differ from the manifests {manifests:?}");
    let generated: BTreeSet<String> =
        kustomization.generators.values().flat_map(|(files, _)| files.iter().cloned()).collect();
    let others: BTreeSet<String> = files.iter().filter(|file| !is_yaml(file)).cloned().collect();
    ensure!(generated == others, "configMapGenerator files {generated:?} differ from the other files {others:?}");
    Ok(())
}

#[test]
fn the_kustomize_base_runs_every_service_as_the_code_expects() -> Result<()> {
    let services = services()?;
    let (kustomization, objects) = base_objects()?;
    let secrets = secret_keys(&objects);
    let telemetry = kustomization.generators.get("economy-telemetry").context("no economy-telemetry ConfigMap")?;
    ensure!(
        telemetry.1.iter().any(|literal| literal.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT=http")),
        "economy-telemetry should set OTEL_EXPORTER_OTLP_ENDPOINT"
    );

    for service in &services {
        let name = service.name;
        let object_name = service.binary();
        let what = format!("Deployment {object_name}");
        let deployment = object(&objects, "Deployment", &object_name)?;
        ensure!(number(&deployment["spec"]["replicas"], "replicas")? >= 2, "{what} should run several replicas");
        let pod = &deployment["spec"]["template"];
        let pod_labels = string_map(&pod["metadata"]["labels"], &format!("{what} pod labels"))?;
        selects(&deployment["spec"]["selector"]["matchLabels"], &pod_labels, &format!("{what} selector"))?;
        let spec = &pod["spec"];
        ensure!(
            spec["enableServiceLinks"].as_bool() == Some(false),
            "{what}: service links would add ECONOMY_* variables"
        );
        ensure!(spec["securityContext"]["runAsNonRoot"].as_bool() == Some(true), "{what} must run as non-root");
        let containers = list(&spec["containers"], "containers")?;
        ensure!(containers.len() == 1, "{what} should have one container");
        let container = &containers[0];
        ensure!(text(&container["name"], "container name")? == name, "{what}: container should be named {name}");
        let config_file = format!("/etc/economy/{name}.toml");
        let command = texts(&container["command"], "command")?;
        ensure!(command == [object_name.clone(), "--config".into(), config_file], "{what} command {command:?}");

        // Ports and probes match the code.
        let ports = list(&container["ports"], "ports")?;
        let port_named = |port_name: &str| {
            ports
                .iter()
                .find(|port| port["name"].as_str() == Some(port_name))
                .map(|port| port["containerPort"].as_u64())
        };
        ensure!(
            port_named("grpc") == Some(Some(u64::from(service.port))),
            "{what}: grpc containerPort should be {}",
            service.port
        );
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            // The kubelet's native gRPC probe: nothing to ship in the image.
            for other in ["exec", "httpGet", "tcpSocket"] {
                ensure!(container[probe][other].is_null(), "{what}: {probe} should be a `grpc` probe, not `{other}`");
            }
            let grpc = &container[probe]["grpc"];
            ensure!(number(&grpc["port"], probe)? == u64::from(service.port), "{what}: {probe} port");
            ensure!(
                text(&grpc["service"], probe)? == service.health,
                "{what}: {probe} should check {}",
                service.health
            );
        }
        for side in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                ensure!(!container["resources"][side][resource].is_null(), "{what}: no {side}.{resource}");
            }
        }

        // Secrets: the database URL and the identity secret; every reference resolves.
        for variable in [service.env("DATABASE_URL"), "ECONOMY_IDENTITY__SECRET".to_owned()] {
            let var = env_var(container, &variable).with_context(|| format!("{what}: no {variable}"))?;
            ensure!(secret_ref(var).is_some(), "{what}: {variable} must come from a Secret");
        }
        for var in list(&container["env"], "env")? {
            let Some((secret, key, optional)) = secret_ref(var) else { continue };
            let keys = secrets.get(&secret).with_context(|| format!("{what}: no Secret {secret}"))?;
            ensure!(optional || keys.contains(&key), "{what}: Secret {secret} has no key {key}");
        }
        if name == "gateway" {
            ensure!(env_var(container, "ECONOMY_GATEWAY__AUTH__HS256_SECRET").is_some(), "{what}: no token key");
        }
        ensure!(env_var(container, "OTEL_SERVICE_NAME").is_some(), "{what}: no OTEL_SERVICE_NAME");
        let env_from = list(&container["envFrom"], "envFrom")?;
        ensure!(
            env_from.iter().any(|source| source["configMapRef"]["name"].as_str() == Some("economy-telemetry")),
            "{what}: the OTLP endpoint comes from economy-telemetry"
        );

        // Configuration: the generated ConfigMap, mounted where --config reads it.
        let config_map = format!("{object_name}-config");
        let (files, _) =
            kustomization.generators.get(&config_map).with_context(|| format!("no {config_map} generator"))?;
        ensure!(*files == [format!("config/{name}.toml")], "{config_map} should hold config/{name}.toml");
        let volumes = list(&spec["volumes"], "volumes")?;
        let volume = volumes
            .iter()
            .find(|volume| volume["configMap"]["name"].as_str() == Some(config_map.as_str()))
            .with_context(|| format!("{what} does not mount {config_map}"))?;
        let mounts = list(&container["volumeMounts"], "volumeMounts")?;
        ensure!(
            mounts
                .iter()
                .any(|mount| mount["name"] == volume["name"] && mount["mountPath"].as_str() == Some("/etc/economy")),
            "{what}: {config_map} should be mounted at /etc/economy"
        );
        let metrics = check_k8s_config(service, &services, &base_dir().join("config").join(format!("{name}.toml")))?;
        if let Some(metrics) = metrics {
            ensure!(
                port_named("metrics") == Some(Some(u64::from(metrics))),
                "{what}: metrics containerPort should be {metrics}"
            );
        }

        // Service and PodDisruptionBudget select these pods.
        let service_object = object(&objects, "Service", &object_name)?;
        selects(&service_object["spec"]["selector"], &pod_labels, &format!("Service {object_name}"))?;
        let service_ports = list(&service_object["spec"]["ports"], "Service ports")?;
        ensure!(
            service_ports.iter().any(|port| port["port"].as_u64() == Some(u64::from(service.port))
                && (port["targetPort"].as_str() == Some("grpc")
                    || port["targetPort"].as_u64() == Some(u64::from(service.port)))),
            "Service {object_name} should serve port {} to the grpc port",
            service.port
        );
        let kind = service_object["spec"]["type"].as_str().unwrap_or("ClusterIP");
        let expected = if name == "gateway" { "LoadBalancer" } else { "ClusterIP" };
        ensure!(kind == expected, "Service {object_name} is {kind}, expected {expected}");
        if name != "gateway" {
            ensure!(
                pod_labels.get("app.kubernetes.io/component").map(String::as_str) == Some("backend"),
                "{what}: component"
            );
        }
        let budget = object(&objects, "PodDisruptionBudget", &object_name)?;
        selects(
            &budget["spec"]["selector"]["matchLabels"],
            &pod_labels,
            &format!("PodDisruptionBudget {object_name}"),
        )?;
        ensure!(
            !budget["spec"]["minAvailable"].is_null() || !budget["spec"]["maxUnavailable"].is_null(),
            "PodDisruptionBudget {object_name} sets no budget"
        );
    }

    // Only the gateway is exposed.
    for (name, service_object) in objects_of(&objects, "Service") {
        let kind = service_object["spec"]["type"].as_str().unwrap_or("ClusterIP");
        ensure!(
            kind == "ClusterIP" || name == "economy-gateway",
            "Service {name} is {kind}: only the gateway is exposed"
        );
    }
    ensure!(objects_of(&objects, "Ingress").next().is_none(), "the gateway's LoadBalancer is the only way in");
    let deployments: BTreeSet<&String> = objects_of(&objects, "Deployment").map(|(name, _)| name).collect();
    ensure!(deployments.len() == services.len(), "unexpected Deployments {deployments:?}");

    // Placeholder secrets are marked as such.
    for (name, secret) in objects_of(&objects, "Secret") {
        let values = string_map(&secret["stringData"], &format!("Secret {name} stringData"))?;
        for (key, value) in values {
            ensure!(value.contains("dev-only"), "Secret {name}.{key} is not a marked development placeholder");
        }
    }
    let policy = object(&objects, "NetworkPolicy", "economy-backend")?;
    ensure!(
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"].as_str() == Some("backend"),
        "the NetworkPolicy should protect the internal services"
    );
    Ok(())
}

/// The `economy-migrate` Job runs `economy migrate` once with every service's database URL
/// from its Secret, and every service's configuration leaves migrating to it
/// (docs/operations.md, "Migrations").
#[test]
fn the_migration_job_migrates_every_service() -> Result<()> {
    let services = services()?;
    let (_, objects) = base_objects()?;
    let secrets = secret_keys(&objects);
    let job = object(&objects, "Job", "economy-migrate")?;
    ensure!(
        number(&job["spec"]["parallelism"], "parallelism")? == 1,
        "economy migrate takes no lock: one pod at a time"
    );
    let spec = &job["spec"]["template"]["spec"];
    ensure!(text(&spec["restartPolicy"], "restartPolicy")? == "Never", "the Job's pod should not restart in place");
    let containers = list(&spec["containers"], "Job containers")?;
    ensure!(containers.len() == 1, "one container migrates every database");
    let container = &containers[0];
    ensure!(texts(&container["command"], "command")? == ["economy", "migrate"], "the Job runs `economy migrate`");
    for service in &services {
        let database = env_var(container, &service.env("DATABASE_URL"))
            .with_context(|| format!("the Job has no database URL for {}", service.name))?;
        let (secret, key, _) = secret_ref(database).context("the database URL must come from a Secret")?;
        ensure!(secrets.get(&secret).is_some_and(|keys| keys.contains(&key)), "no Secret {secret} key {key}");
        let deployment = object(&objects, "Deployment", &service.binary())?;
        let served = &deployment["spec"]["template"]["spec"]["containers"][0];
        let env_url = env_var(served, &service.env("DATABASE_URL")).and_then(secret_ref);
        ensure!(env_url == Some((secret, key, false)), "the Job and economy-{} read different URLs", service.name);
        let config = (service.load)(&base_dir().join("config").join(format!("{}.toml", service.name)))?;
        ensure!(
            config[service.name]["database"]["migrate_on_start"] == serde_json::Value::Bool(false),
            "config/{}.toml should set database.migrate_on_start = false: the Job migrates",
            service.name
        );
    }
    Ok(())
}

#[test]
fn the_production_overlay_scales_pins_and_drops_the_placeholders() -> Result<()> {
    let services = services()?;
    let (_, base) = base_objects()?;
    let (root, kustomization) = kustomization(&production_dir())?;
    ensure!(kustomization.resources.contains(&"../../base".to_owned()), "production should build on ../../base");
    let mut referenced: BTreeSet<String> =
        kustomization.resources.iter().filter(|resource| !resource.starts_with("..")).cloned().collect();
    let patches = list(&root["patches"], "patches")?;
    for patch in patches {
        if let Some(path) = patch["path"].as_str() {
            referenced.insert(path.to_owned());
        }
    }
    let files = files_below(&production_dir())?;
    let local: BTreeSet<String> = files.into_iter().filter(|file| file != "kustomization.yaml").collect();
    ensure!(referenced == local, "production files {local:?} differ from those referenced {referenced:?}");

    let images = list(&root["images"], "images")?;
    let image = images.iter().find(|image| image["name"].as_str() == Some("economy")).context("no economy image")?;
    let tag = image["newTag"].as_str().unwrap_or_default();
    ensure!((!tag.is_empty() && tag != "dev") || image["digest"].is_string(), "production should pin a release tag");

    let replicas = list(&root["replicas"], "replicas")?;
    for service in &services {
        let entry = replicas
            .iter()
            .find(|entry| entry["name"].as_str() == Some(&service.binary()))
            .with_context(|| format!("production sets no replica count for {}", service.binary()))?;
        ensure!(number(&entry["count"], "count")? >= 2, "{} should run several replicas", service.binary());
    }

    // Every placeholder Secret of the base is deleted.
    let mut deleted = BTreeSet::new();
    for patch in patches {
        let Some(inline) = patch["patch"].as_str() else { continue };
        for document in parse_documents(inline, "inline patch")? {
            if document["$patch"].as_str() == Some("delete") && document["kind"].as_str() == Some("Secret") {
                deleted.insert(text(&document["metadata"]["name"], "deleted Secret")?.to_owned());
            }
        }
    }
    let placeholders: BTreeSet<String> = objects_of(&base, "Secret").map(|(name, _)| name.clone()).collect();
    ensure!(deleted == placeholders, "production deletes {deleted:?}, the base's placeholders are {placeholders:?}");

    // Production resources patch every service's container (matched by name).
    let resources = index(documents(&production_dir().join("resources.yaml"))?, "resources.yaml")?;
    for service in &services {
        let patch = object(&resources, "Deployment", &service.binary())?;
        let containers = list(&patch["spec"]["template"]["spec"]["containers"], "containers")?;
        let container = containers.first().context("no container")?;
        ensure!(container["name"].as_str() == Some(service.name), "resources.yaml: container of {}", service.name);
        for side in ["requests", "limits"] {
            ensure!(!container["resources"][side]["memory"].is_null(), "resources.yaml: {} {side}", service.name);
        }
    }
    Ok(())
}

/// A rendered kustomization without the Prometheus Operator's custom resources
/// (`monitoring.coreos.com`), whose schemas kubernetes-validate does not have.
fn without_custom_resources(rendered: &str) -> Result<String> {
    let mut kept = Vec::new();
    for document in parse_documents(rendered, "render")? {
        if !text(&document["apiVersion"], "apiVersion")?.starts_with(MONITORING_API) {
            kept.push(serde_norway::to_string(&document)?);
        }
    }
    Ok(kept.join("---\n"))
}

/// `kubectl` when it is installed (it renders kustomizations offline).
fn kubectl() -> Option<&'static str> {
    let works =
        Command::new("kubectl").args(["version", "--client"]).output().is_ok_and(|output| output.status.success());
    works.then_some("kubectl")
}

fn render(dir: &Path) -> Result<String> {
    let output = Command::new("kubectl").arg("kustomize").arg(dir).output()?;
    ensure!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn the_kustomizations_render_with_kubectl_when_installed() -> Result<()> {
    if kubectl().is_none() {
        eprintln!("kubectl is not installed: rendering the kustomizations skipped");
        return Ok(());
    }
    let services = services()?;
    let base = render(&base_dir())?;
    let production = render(&production_dir())?;
    let base_objects = index(parse_documents(&base, "rendered base")?, "rendered base")?;
    let production_objects = index(parse_documents(&production, "rendered production")?, "rendered production")?;
    ensure!(objects_of(&base_objects, "Secret").count() == 3, "the base renders its placeholder Secrets");
    ensure!(objects_of(&production_objects, "Secret").next().is_none(), "production must render no Secret");

    let (root, _) = kustomization(&production_dir())?;
    let image = list(&root["images"], "images")?.first().context("production sets no image")?;
    let expected_image = format!("{}:{}", text(&image["newName"], "newName")?, text(&image["newTag"], "newTag")?);
    let config_maps: BTreeSet<&String> = objects_of(&production_objects, "ConfigMap").map(|(name, _)| name).collect();
    for ((kind, name), object) in &production_objects {
        if kind != "Namespace" {
            ensure!(
                object["metadata"]["namespace"].as_str() == Some("economy"),
                "{kind}/{name} is not in namespace economy"
            );
        }
        let pod = match kind.as_str() {
            "Deployment" | "Job" => &object["spec"]["template"]["spec"],
            _ => continue,
        };
        for container in list(&pod["containers"], "containers")? {
            ensure!(
                container["image"].as_str() == Some(expected_image.as_str()),
                "{kind}/{name}: image {:?}",
                container["image"]
            );
        }
        // Generated (hash-suffixed) ConfigMap names are referenced, never the bare ones.
        for volume in pod["volumes"].as_sequence().into_iter().flatten() {
            if let Some(config_map) = volume["configMap"]["name"].as_str() {
                ensure!(
                    config_maps.contains(&config_map.to_owned()),
                    "{kind}/{name} mounts missing ConfigMap {config_map}"
                );
            }
        }
    }
    for service in &services {
        let deployment = object(&production_objects, "Deployment", &service.binary())?;
        ensure!(number(&deployment["spec"]["replicas"], "replicas")? >= 2, "{} replicas", service.binary());
    }

    // Schema validation, offline, when `kubernetes-validate` (PyPI) is installed.
    let validator_works =
        Command::new("kubernetes-validate").arg("--version").output().is_ok_and(|output| output.status.success());
    if !validator_works {
        eprintln!("kubernetes-validate is not installed: schema validation skipped");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("economy-deploy-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let (base_file, production_file) = (dir.join("base.yaml"), dir.join("production.yaml"));
    // kubernetes-validate has the schemas of Kubernetes' own kinds only: the Prometheus
    // Operator's custom resources (ServiceMonitor, PrometheusRule) are left out here and
    // checked by `the_service_monitor_scrapes_every_pod_and_the_rules_are_the_alerts`.
    std::fs::write(&base_file, without_custom_resources(&base)?)?;
    std::fs::write(&production_file, without_custom_resources(&production)?)?;
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(&base_file)
        .arg(&production_file)
        .output()?;
    std::fs::remove_dir_all(&dir)?;
    ensure!(
        output.status.success(),
        "kubernetes-validate: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Monitoring: the Prometheus Operator's ServiceMonitor and PrometheusRule
// ---------------------------------------------------------------------------------------

/// The API group of the Prometheus Operator's custom resources.
const MONITORING_API: &str = "monitoring.coreos.com/";

/// Whether every `selector` label is among `labels`.
fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// The container port a Service port sends to: by name, or by number.
fn target_container_port<'a>(service_port: &Value, container: &'a Value) -> Option<&'a Value> {
    let ports = container["ports"].as_sequence()?;
    match &service_port["targetPort"] {
        Value::String(name) => ports.iter().find(|port| port["name"].as_str() == Some(name)),
        Value::Number(number) => ports.iter().find(|port| port["containerPort"].as_u64() == number.as_u64()),
        _ => None,
    }
}

/// The PrometheusRule carries exactly the groups of deploy/observability/alerts.yaml, and
/// the ServiceMonitor scrapes every service's pods once, on the container port their
/// `[metrics] listen` opens, through ClusterIP Services only, honouring the metrics' own
/// `job` and `service` labels (docs/operations.md, "Alerts and dashboards").
#[test]
fn the_service_monitor_scrapes_every_pod_and_the_rules_are_the_alerts() -> Result<()> {
    let services = services()?;
    let (_, objects) = base_objects()?;

    let rule = object(&objects, "PrometheusRule", "economy")?;
    ensure!(text(&rule["apiVersion"], "apiVersion")?.starts_with(MONITORING_API), "PrometheusRule apiVersion");
    let alerts = document(&deploy_dir().join("observability/alerts.yaml"))?;
    ensure!(
        rule["spec"]["groups"] == alerts["groups"],
        "prometheus-rule.yaml's spec.groups differ from deploy/observability/alerts.yaml's groups: copy them over"
    );

    let monitor = object(&objects, "ServiceMonitor", "economy")?;
    ensure!(text(&monitor["apiVersion"], "apiVersion")?.starts_with(MONITORING_API), "ServiceMonitor apiVersion");
    let selector = string_map(&monitor["spec"]["selector"]["matchLabels"], "ServiceMonitor selector")?;
    ensure!(!selector.is_empty(), "the ServiceMonitor should select Economy's Services");
    let endpoints = list(&monitor["spec"]["endpoints"], "ServiceMonitor endpoints")?;
    ensure!(endpoints.len() == 1, "one endpoint: the metrics port");
    let endpoint = &endpoints[0];
    let port_name = text(&endpoint["port"], "endpoint port")?;
    ensure!(endpoint["path"].as_str().unwrap_or("/metrics") == "/metrics", "the endpoint should scrape /metrics");
    ensure!(endpoint["honorLabels"].as_bool() == Some(true), "economy_job_*{{job}} needs honorLabels: true");

    // Services the monitor scrapes: selected, with the endpoint's port.
    let scraped: Vec<(&String, &Value)> = objects_of(&objects, "Service")
        .filter(|(_, service)| {
            string_map(&service["metadata"]["labels"], "labels").is_ok_and(|labels| matches(&selector, &labels))
        })
        .filter_map(|(name, service)| {
            let ports = service["spec"]["ports"].as_sequence()?;
            ports.iter().find(|port| port["name"].as_str() == Some(port_name)).map(|port| (name, port))
        })
        .collect();
    for service in &services {
        let deployment = object(&objects, "Deployment", &service.binary())?;
        let pod = &deployment["spec"]["template"];
        let pod_labels = string_map(&pod["metadata"]["labels"], "pod labels")?;
        let container = &pod["spec"]["containers"][0];
        let mut scraping = Vec::new();
        for (name, port) in &scraped {
            let service_object = object(&objects, "Service", name)?;
            let service_selector = string_map(&service_object["spec"]["selector"], "Service selector")?;
            if !matches(&service_selector, &pod_labels) {
                continue;
            }
            let kind = service_object["spec"]["type"].as_str().unwrap_or("ClusterIP");
            ensure!(kind == "ClusterIP", "Service {name} would expose the metrics of {} outside", service.binary());
            let target = target_container_port(port, container).with_context(|| {
                format!("Service {name}'s {port_name} port sends to no port of {}", service.binary())
            })?;
            ensure!(
                target["name"].as_str() == Some("metrics"),
                "Service {name}'s {port_name} port should send to the `metrics` container port"
            );
            scraping.push(name.as_str());
        }
        ensure!(scraping.len() == 1, "{} should be scraped through one Service, not {scraping:?}", service.binary());
    }
    Ok(())
}
