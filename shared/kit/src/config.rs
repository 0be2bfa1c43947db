//! Layered configuration (docs/operations.md, "Configuration"): the struct's defaults, then an optional TOML
//! file, then `ECONOMY_<SECTION>__<KEY>` environment variables.
//!
//! Unknown keys are refused, each named with where it came from (the file or the
//! variable), so a typo or an unsupported setting never goes unnoticed. Only variables of
//! the form `ECONOMY_<SECTION>__<KEY>` (a double underscore after the section) are
//! configuration: `ECONOMY_TEST_POSTGRES_URL`, `ECONOMY_IMAGE`, `ECONOMY_ENDPOINT` and
//! the like are not. A whole section of another Economy binary ([`SECTIONS`]) is skipped,
//! so one file or one environment may serve every binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Serialize, de::DeserializeOwned};

/// Prefix of the configuration variables.
const PREFIX: &str = "ECONOMY_";
/// Separator of a variable's path segments (`ECONOMY_GATEWAY__AUTH__ISSUER`).
const SEPARATOR: &str = "__";

/// Every top-level section of every Economy binary: the services' own and the shared ones.
/// A binary that does not read one of them skips it whole; any other unknown top-level key
/// is refused.
pub const SECTIONS: &[&str] =
    &["gateway", "ledger", "items", "redemption", "market", "identity", "server", "log", "metrics"];

/// Loads `T` from its `Default`, then `file` (TOML, if given), then the environment.
///
/// `ECONOMY_LEDGER__LISTEN=127.0.0.1:0` sets `ledger.listen`. Values stay strings until
/// deserialized into the field's type, so a numeric-looking secret is never mangled.
/// Errors name the bad key and its source; unknown keys are refused (module doc).
pub fn load<T>(file: Option<&Path>) -> anyhow::Result<T>
where
    T: Default + Serialize + DeserializeOwned,
{
    load_from(file, configuration_variables(std::env::vars()))
}

/// [`load`] with the configuration variables given (`ECONOMY_<SECTION>__<KEY>` -> value).
pub fn load_from<T>(file: Option<&Path>, variables: BTreeMap<String, String>) -> anyhow::Result<T>
where
    T: Default + Serialize + DeserializeOwned,
{
    let mut builder = ::config::Config::builder().add_source(::config::Config::try_from(&T::default())?);
    if let Some(path) = file {
        builder = builder.add_source(::config::File::from(path).required(true));
    }
    let env = ::config::Environment::with_prefix("ECONOMY")
        .prefix_separator("_")
        .separator(SEPARATOR)
        // Values stay strings (numbers and booleans still deserialize from them): parsing
        // them first would turn a numeric-looking secret such as `0123…` into another string.
        .try_parsing(false)
        .source(Some(variables.clone().into_iter().collect()));
    let mut ignored = Vec::new();
    let settings = serde_ignored::deserialize(builder.add_source(env).build()?, |path| ignored.push(path.to_string()))?;
    let unknown: Vec<String> = ignored
        .iter()
        .filter(|path| !SECTIONS.contains(&path.as_str()))
        .map(|path| format!("{path} (from {})", source_of(path, file, &variables)))
        .collect();
    anyhow::ensure!(unknown.is_empty(), "unknown configuration key: {}", unknown.join("; "));
    Ok(settings)
}

/// The configuration variables among `variables`: `ECONOMY_<SECTION>__<KEY>` only.
pub fn configuration_variables(variables: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    variables.into_iter().filter(|(name, _)| is_configuration_variable(name)).collect()
}

/// Whether `name` is a configuration variable: `ECONOMY_` then a section and `__`.
pub fn is_configuration_variable(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once(SEPARATOR))
        .is_some_and(|(section, _)| !section.is_empty())
}

/// Where the key at `path` (dotted) came from: the variable that sets it or a key below
/// it, else the file.
fn source_of(path: &str, file: Option<&Path>, variables: &BTreeMap<String, String>) -> String {
    let under = |name: &str| {
        let key = name[PREFIX.len()..].to_lowercase().replace(SEPARATOR, ".");
        key == path || key.starts_with(&format!("{path}."))
    };
    match (variables.keys().find(|name| under(name)), file) {
        (Some(name), _) => format!("environment variable {name}"),
        (None, Some(file)) => format!("file {}", file.display()),
        (None, None) => "the defaults".to_owned(),
    }
}

/// The optional `--config FILE` of a service binary (its only argument).
pub fn file_argument(binary: &str) -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok(None),
        (Some("--config"), Some(file), None) => Ok(Some(PathBuf::from(file))),
        _ => anyhow::bail!("usage: {binary} [--config FILE]"),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    struct Sample {
        section: Section,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Section {
        name: String,
        port: u16,
    }

    impl Default for Section {
        fn default() -> Self {
            Self { name: "default".into(), port: 1 }
        }
    }

    #[test]
    fn file_overrides_defaults() -> anyhow::Result<()> {
        let path = temp_file("[section]\nport = 7\n");
        let loaded: Sample = load_from(Some(&path), BTreeMap::new())?;
        std::fs::remove_file(&path)?;
        assert_eq!(loaded.section, Section { name: "default".into(), port: 7 });
        Ok(())
    }

    fn temp_file(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("economy-config-{}.toml", uuid::Uuid::now_v7()));
        std::fs::write(&path, text).expect("written");
        path
    }

    fn variables(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        configuration_variables(pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())))
    }

    #[test]
    fn environment_values_reach_strings_verbatim_and_numbers_as_numbers() -> anyhow::Result<()> {
        let secret = "0123456789012345678901234567890123456789";
        let env = variables(&[("ECONOMY_SECTION__NAME", secret), ("ECONOMY_SECTION__PORT", "8080")]);
        let loaded: Sample = load_from(None, env)?;
        assert_eq!(loaded.section, Section { name: secret.into(), port: 8080 });
        Ok(())
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused_naming_the_file() {
        let path = temp_file("[section]\nport = 7\nprot = 8\n");
        let refused = load_from::<Sample>(Some(&path), BTreeMap::new()).expect_err("unknown key");
        let message = format!("{refused:#}");
        std::fs::remove_file(&path).expect("removed");
        assert!(message.contains("section.prot"), "{message}");
        assert!(message.contains(&format!("file {}", path.display())), "{message}");
    }

    #[test]
    fn an_unknown_key_in_the_environment_is_refused_naming_the_variable() {
        let env = variables(&[("ECONOMY_SECTION__NAME", "x"), ("ECONOMY_SECTION__NAMES", "y")]);
        let message = format!("{:#}", load_from::<Sample>(None, env).expect_err("unknown key"));
        assert!(message.contains("section.names (from environment variable ECONOMY_SECTION__NAMES)"), "{message}");
        let typo = variables(&[("ECONOMY_SECTOIN__NAME", "x")]);
        let message = format!("{:#}", load_from::<Sample>(None, typo).expect_err("unknown section"));
        assert!(message.contains("sectoin (from environment variable ECONOMY_SECTOIN__NAME)"), "{message}");
    }

    #[test]
    fn only_double_underscore_variables_are_configuration() {
        let env = variables(&[
            ("ECONOMY_TEST_POSTGRES_URL", "postgres://x"),
            ("ECONOMY_TEST_POSTGRES_RESTART", "1"),
            ("ECONOMY_BENCH_POSTGRES_URL", "postgres://y"),
            ("ECONOMY_IMAGE", "economy:dev"),
            ("ECONOMY_ENDPOINT", "http://127.0.0.1:50051"),
            ("ECONOMY___X", "1"),
            ("OTHER__SECTION__NAME", "z"),
            ("ECONOMY_SECTION__NAME", "from-env"),
        ]);
        assert_eq!(env.keys().collect::<Vec<_>>(), ["ECONOMY_SECTION__NAME"]);
        let loaded: Sample = load_from(None, env).expect("loaded");
        assert_eq!(loaded.section, Section { name: "from-env".into(), port: 1 });
    }

    #[test]
    fn another_binarys_section_is_skipped_but_not_its_misspelling() {
        let path = temp_file("[section]\nport = 2\n[gateway]\nlisten = \"0.0.0.0:1\"\n[metrics]\nlisten = \"x\"\n");
        let loaded = load_from::<Sample>(Some(&path), variables(&[("ECONOMY_LEDGER__LISTEN", "x")]));
        std::fs::remove_file(&path).expect("removed");
        assert_eq!(loaded.expect("loaded").section.port, 2);
        assert!(load_from::<Sample>(None, variables(&[("ECONOMY_GATWAY__LISTEN", "x")])).is_err());
    }

    #[test]
    fn missing_file_is_an_error() {
        let missing = Path::new("/nonexistent/economy.toml");
        assert!(load::<Sample>(Some(missing)).is_err());
    }
}
