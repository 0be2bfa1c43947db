//! Layered configuration (docs/operations.md, "Configuration"): the struct's defaults, then an optional TOML
//! file, then `ECONOMY_<SECTION>__<KEY>` environment variables.

use std::path::{Path, PathBuf};

use serde::{Serialize, de::DeserializeOwned};

/// Loads `T` from its `Default`, then `file` (TOML, if given), then the environment.
///
/// `ECONOMY_LEDGER__LISTEN=127.0.0.1:0` sets `ledger.listen`. Values stay strings until
/// deserialized into the field's type, so a numeric-looking secret is never mangled.
/// Errors name the bad key.
pub fn load<T>(file: Option<&Path>) -> anyhow::Result<T>
where
    T: Default + Serialize + DeserializeOwned,
{
    let mut builder = ::config::Config::builder().add_source(::config::Config::try_from(&T::default())?);
    if let Some(path) = file {
        builder = builder.add_source(::config::File::from(path).required(true));
    }
    let env = ::config::Environment::with_prefix("ECONOMY").prefix_separator("_").separator("__").try_parsing(true);
    Ok(builder.add_source(env).build()?.try_deserialize()?)
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
        let path = std::env::temp_dir().join(format!("economy-config-{}.toml", uuid::Uuid::now_v7()));
        std::fs::write(&path, "[section]\nport = 7\n")?;
        let loaded: Sample = load(Some(&path))?;
        std::fs::remove_file(&path)?;
        assert_eq!(loaded.section, Section { name: "default".into(), port: 7 });
        Ok(())
    }

    #[test]
    fn missing_file_is_an_error() {
        let missing = Path::new("/nonexistent/economy.toml");
        assert!(load::<Sample>(Some(missing)).is_err());
    }
}
