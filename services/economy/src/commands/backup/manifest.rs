//! `manifest.json` of a backup (docs/operations.md, "Backup and restore"): when it was
//! taken, by which release, and per database its file, size, SHA-256 and schema version.
//! It is written last, so a directory without one is no backup.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use economy_stack::Service;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::commands::databases::file_name;

/// The manifest's file name inside a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format this release writes and reads.
pub const FORMAT: u32 = 1;

/// A backup's description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// When the backup finished (RFC 3339, UTC).
    pub created_at: String,
    /// The `economy` release that took it.
    pub economy_version: String,
    /// The commit it was built from, when the build knew it (`economy_kit::metrics::COMMIT`).
    pub git_commit: Option<String>,
    /// One entry per service, in the order they were copied.
    pub databases: Vec<Database>,
}

/// One database of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    /// The service that owns it (`ledger`, `items`, `redemption`, `market`, `gateway`).
    pub service: String,
    /// Its file in the backup directory: `<service>.db`.
    pub file: String,
    /// The file's size, bytes.
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// The last migration applied to it (`None`: never migrated).
    pub migration_version: Option<i64>,
    /// When its copy was taken (RFC 3339, UTC).
    pub copied_at: String,
}

impl Manifest {
    /// A manifest of `databases` taken now by this binary.
    pub fn new(databases: Vec<Database>) -> Self {
        Self {
            format: FORMAT,
            created_at: now(),
            economy_version: env!("CARGO_PKG_VERSION").to_owned(),
            git_commit: Some(economy_kit::metrics::COMMIT).filter(|commit| *commit != "unknown").map(str::to_owned),
            databases,
        }
    }

    /// Writes `dir/manifest.json` (through a temporary file, synced, then renamed).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let partial = dir.join(format!("{MANIFEST_FILE}.partial"));
        let mut file = File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
        file.write_all(&serde_json::to_vec_pretty(self)?)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&partial, dir.join(MANIFEST_FILE))?;
        Ok(())
    }

    /// Reads `dir/manifest.json`; refuses another format and a manifest that does not
    /// describe each of the five databases exactly once under its own file name.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read(&path)
            .with_context(|| format!("cannot read {} (is {} a backup?)", path.display(), dir.display()))?;
        let manifest: Self =
            serde_json::from_slice(&text).with_context(|| format!("{} is not a backup manifest", path.display()))?;
        anyhow::ensure!(
            manifest.format == FORMAT,
            "{} has format {}; this release reads format {FORMAT}",
            path.display(),
            manifest.format
        );
        for service in Service::ALL {
            let entries = manifest.databases.iter().filter(|database| database.service == service.name()).count();
            anyhow::ensure!(entries == 1, "{} lists the {service} database {entries} times", path.display());
        }
        anyhow::ensure!(manifest.databases.len() == Service::ALL.len(), "{} lists unknown databases", path.display());
        for database in &manifest.databases {
            anyhow::ensure!(
                database.file == format!("{}.db", database.service),
                "{} names the {} database's file {:?}",
                path.display(),
                database.service,
                database.file
            );
        }
        Ok(manifest)
    }

    /// The entry of `service` ([`Manifest::read`] checked there is exactly one).
    pub fn database(&self, service: Service) -> anyhow::Result<&Database> {
        self.databases
            .iter()
            .find(|database| database.service == service.name())
            .with_context(|| format!("the manifest lists no {service} database"))
    }
}

impl Database {
    /// Describes the copy of `service`'s database at `dir/<service>.db`.
    pub fn describe(
        service: Service,
        dir: &Path,
        migration_version: Option<i64>,
        copied_at: String,
    ) -> anyhow::Result<Self> {
        let file = file_name(service);
        let (bytes, sha256) = digest(&dir.join(&file))?;
        Ok(Self { service: service.name().to_owned(), file, bytes, sha256, migration_version, copied_at })
    }

    /// Refuses the file at `path` unless its size and SHA-256 are the manifest's.
    pub fn verify(&self, path: &Path) -> anyhow::Result<()> {
        let (bytes, sha256) = digest(path)?;
        anyhow::ensure!(
            bytes == self.bytes && sha256 == self.sha256,
            "{} does not match the manifest (size {bytes} bytes, SHA-256 {sha256}; expected {} bytes, {}): the \
             backup is damaged or was changed, nothing was restored",
            path.display(),
            self.bytes,
            self.sha256
        );
        Ok(())
    }
}

/// Size and lowercase hex SHA-256 of the file at `path`.
pub fn digest(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// Now, RFC 3339 in UTC to the millisecond (the copies of one backup are milliseconds apart).
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("economy-manifest-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn sample(dir: &Path) -> Manifest {
        let databases = Service::ALL
            .into_iter()
            .map(|service| {
                std::fs::write(dir.join(file_name(service)), service.name()).expect("write");
                Database::describe(service, dir, Some(3), now()).expect("describe")
            })
            .collect();
        Manifest::new(databases)
    }

    #[test]
    fn written_manifest_reads_back_and_verifies() {
        let dir = temp_dir();
        let manifest = sample(&dir);
        manifest.write(&dir).expect("write");
        let read = Manifest::read(&dir).expect("read");
        assert_eq!(read, manifest);
        let ledger = read.database(Service::Ledger).expect("ledger");
        assert_eq!(ledger.bytes, 6);
        assert_eq!(ledger.sha256, hex::encode(Sha256::digest(b"ledger")));
        ledger.verify(&dir.join("ledger.db")).expect("intact");
        std::fs::write(dir.join("ledger.db"), "ledgeR").expect("tamper");
        let error = ledger.verify(&dir.join("ledger.db")).expect_err("tampered").to_string();
        assert!(error.contains("does not match the manifest"), "{error}");
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn a_manifest_must_name_each_database_once_under_its_own_file() {
        let dir = temp_dir();
        let mut manifest = sample(&dir);
        manifest.databases[0].file = "../elsewhere.db".into();
        manifest.write(&dir).expect("write");
        assert!(Manifest::read(&dir).is_err());
        let mut manifest = sample(&dir);
        manifest.databases.pop();
        manifest.write(&dir).expect("write");
        assert!(Manifest::read(&dir).is_err());
        let mut manifest = sample(&dir);
        manifest.format = 2;
        manifest.write(&dir).expect("write");
        assert!(Manifest::read(&dir).is_err());
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
