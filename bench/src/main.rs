//! `economy-bench`: the benchmark harness's command line (see the `economy_bench` crate).

use std::process::ExitCode;

use clap::Parser;
use economy_bench::cli::{self, Cli};

#[global_allocator]
static ALLOCATOR: economy_kit::Allocator = economy_kit::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
