//! Smoke test of the built binary: `economy --help` lists the commands.

use std::process::Command;

#[test]
fn help_lists_the_commands() {
    let output = Command::new(env!("CARGO_BIN_EXE_economy")).arg("--help").output().expect("run economy --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in
        ["up", "token", "asset", "rule", "adjust", "balance", "transfer", "hold", "convert", "history", "reconcile"]
    {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}
