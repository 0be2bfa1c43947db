//! The gateway logs its upstreams' health changes (docs/operations.md, "Observability"):
//! the real gateway in front of the real ledger, probing every second, with this test
//! binary's logs captured. The ledger goes away: one `upstream not serving` warning naming
//! it; it comes back: one `upstream serving again`.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use economy_testkit::{Service, test_stack};

/// What the process logged, as text lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Installs a subscriber writing every event at `info` and above here.
    fn install() -> Self {
        let captured = Self::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
        captured
    }

    /// The lines logged so far that contain every one of `parts`.
    fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
        text.lines().filter(|line| parts.iter().all(|part| line.contains(part))).map(str::to_owned).collect()
    }

    /// Waits (10 s at most) until a line contains every one of `parts`.
    async fn wait_for(&self, parts: &[&str]) -> Vec<String> {
        for _ in 0..100 {
            let lines = self.lines_with(parts);
            if !lines.is_empty() {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no log line with {parts:?}");
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_health_changes_are_logged_once_each() {
    let logs = Captured::install();
    let mut stack = test_stack(&[Service::Ledger, Service::Gateway])
        .configure(|config| config.gateway.health_interval_secs = 1)
        .start()
        .await;
    let down = ["WARN", "upstream not serving", "upstream=\"ledger\""];
    let up = ["INFO", "upstream serving again", "upstream=\"ledger\""];
    assert!(logs.lines_with(&down[1..]).is_empty(), "the ledger served from the start");

    stack.stop(Service::Ledger).await;
    logs.wait_for(&down).await;
    stack.restart(Service::Ledger).await;
    logs.wait_for(&up).await;
    // Probes went on meanwhile: still one line per change.
    assert_eq!(logs.lines_with(&down).len(), 1, "{:?}", logs.lines_with(&["upstream"]));
    assert_eq!(logs.lines_with(&up).len(), 1);
}
