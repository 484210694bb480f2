#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::process::ExitCode;

use clap::Parser;

use npyfs::cli::{Cli, Command, InspectArgs, MountArgs};
use npyfs::daemon::{self, MountConfig};
use npyfs::{inspect, source};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("npyfs: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Mount(args) => {
            daemon::mount(&mount_config(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Unmount(args) => {
            daemon::unmount(&args.mountpoint)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect(args) => Ok(inspect_source(&args)),
    }
}

fn mount_config(args: MountArgs) -> MountConfig {
    MountConfig {
        source: args.source,
        mountpoint: args.mountpoint,
        foreground: args.foreground,
        allow_other: args.allow_other,
        threads: usize::from(args.threads),
        log_file: args.log_file,
        read_ahead_kb: args.read_ahead_kb,
        max_maps: args.max_maps as usize,
        writable: args.writable,
        watch_interval: (args.watch_interval > 0.0 && args.watch_interval.is_finite())
            .then(|| std::time::Duration::from_secs_f64(args.watch_interval.min(86400.0))),
    }
}

/// Exit 0 and print the arrays, or exit 2 with the reason.
fn inspect_source(args: &InspectArgs) -> ExitCode {
    let loaded = args
        .source
        .canonicalize()
        .map_err(|e| source::SourceError::new(&args.source, e.to_string()))
        .and_then(|path| source::load(&path));
    match loaded {
        Ok(arrays) if args.json => {
            println!("{}", inspect::json(&arrays));
            ExitCode::SUCCESS
        }
        Ok(arrays) => {
            print!("{}", inspect::table(&arrays));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("npyfs: {e}");
            ExitCode::from(2)
        }
    }
}
