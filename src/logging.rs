//! Logs through `log`, filtered by `RUST_LOG` (default "warn"): to
//! `--log-file` when given, else to stderr (which a daemon points at
//! /dev/null).

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};

pub fn init(log_file: Option<&Path>) -> Result<()> {
    let mut builder = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,fuser=error"),
    );
    if let Some(path) = log_file {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open log file", path.display()))?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    // A second init (tests) is harmless.
    let _ = builder.try_init();
    Ok(())
}
