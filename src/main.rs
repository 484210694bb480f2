#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{CommandFactory, Parser};

use npyfs::cli::{
    self, Cli, Command, CompletionsArgs, ExportArgs, HelperCli, InspectArgs, ManArgs, MountArgs,
};
use npyfs::daemon::{self, MountConfig};
use npyfs::mountopts::MountOptions;
use npyfs::{export, inspect, locate, source};

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let command = if cli::invoked_as_helper(&argv0) {
        // mount(8) runs /sbin/mount.fuse.npyfs SOURCE MOUNTPOINT -o OPTS.
        let helper = HelperCli::parse();
        if helper.fake {
            return ExitCode::SUCCESS;
        }
        Command::Mount(helper.into_mount_args())
    } else {
        Cli::parse().command
    };
    match run(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("npyfs: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Mount(args) => {
            daemon::mount(&mount_config(args)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Unmount(args) => {
            daemon::unmount(&args.mountpoint)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect(args) => Ok(inspect_source(&args)),
        Command::Export(args) => export_array(&args),
        Command::Completions(args) => {
            completions(&args);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(args) => {
            man(&args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Seconds between looks at the source; 0 (or nonsense) turns watching off.
fn watch_interval(secs: f64) -> Option<std::time::Duration> {
    (secs > 0.0 && secs.is_finite()).then(|| std::time::Duration::from_secs_f64(secs.min(86400.0)))
}

/// Flags first, then `-o` options on top.
fn mount_config(args: MountArgs) -> anyhow::Result<MountConfig> {
    let opts = MountOptions::parse(&args.options)?;
    let config = MountConfig {
        source: args.source,
        mountpoint: args.mountpoint,
        foreground: args.foreground,
        allow_other: args.allow_other || opts.allow_other,
        threads: opts.threads.unwrap_or(usize::from(args.threads)),
        log_file: opts.log_file.or(args.log_file),
        read_ahead_kb: opts.read_ahead_kb.unwrap_or(args.read_ahead_kb),
        max_maps: opts.max_maps.unwrap_or(args.max_maps as usize),
        writable: args.writable || opts.writable,
        watch_interval: watch_interval(opts.watch_interval.unwrap_or(args.watch_interval)),
        drop_part_cache: args.drop_part_cache || opts.drop_part_cache,
    };
    if !opts.ignored.is_empty() {
        // Logging starts in the daemon; this goes to stderr now if asked for.
        if std::env::var_os("RUST_LOG").is_some() {
            eprintln!(
                "npyfs: ignoring generic mount options: {}",
                opts.ignored.join(",")
            );
        }
    }
    Ok(config)
}

fn load_source(path: &Path) -> Result<Vec<source::VirtualArray>, source::SourceError> {
    path.canonicalize()
        .map_err(|e| source::SourceError::new(path, e.to_string()))
        .and_then(|p| source::load(&p))
}

/// Exit 0 and print the arrays (or a location), or exit 2 with the reason.
fn inspect_source(args: &InspectArgs) -> ExitCode {
    let arrays = match load_source(&args.source) {
        Ok(arrays) => arrays,
        Err(e) => {
            eprintln!("npyfs: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(at) = &args.at {
        let found = locate::parse_at(at).and_then(|at| {
            let array = locate::find_array(&arrays, args.name.as_deref())?;
            Ok((array, locate::locate(array, &at)?))
        });
        return match found {
            Ok((_, loc)) if args.json => match serde_json::to_string_pretty(&loc) {
                Ok(s) => {
                    println!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("npyfs: {e}");
                    ExitCode::from(2)
                }
            },
            Ok((array, loc)) => {
                print!("{}", locate::render(array, &loc));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("npyfs: {}: {e}", args.source.display());
                ExitCode::from(2)
            }
        };
    }
    if args.json {
        println!("{}", inspect::json(&arrays));
    } else {
        print!("{}", inspect::table(&arrays));
    }
    ExitCode::SUCCESS
}

fn export_array(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    npyfs::logging::init(None)?;
    let arrays = load_source(&args.source)?;
    let array = locate::find_array(&arrays, Some(&args.name))
        .map_err(|e| anyhow!("{}: {e}", args.source.display()))?;
    export_signals()?;
    let opts = export::ExportOptions {
        force: args.force,
        buffer_size: (args.buffer_mib as usize) << 20,
        copy_range: !args.no_copy_range,
    };
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(array.size());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(array.name.clone());
        bar
    });
    let result = export::export(array, &args.output, &opts, &mut |done, _total| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result?;
    log::info!(
        "{}: {} bytes ({} by copy_file_range, {} buffered)",
        args.output.display(),
        report.bytes,
        report.range_copied,
        report.buffered
    );
    Ok(ExitCode::SUCCESS)
}

/// On SIGINT/SIGTERM/SIGHUP during an export: remove the temporary file, exit 130.
fn export_signals() -> anyhow::Result<()> {
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            unsafe { libc::sigwait(&set, &mut sig) };
            export::remove_pending();
            eprintln!("npyfs: interrupted; nothing written");
            std::process::exit(128 + sig);
        })
        .context("signal thread")?;
    Ok(())
}

fn completions(args: &CompletionsArgs) {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "npyfs", &mut std::io::stdout());
}

fn man(args: &ManArgs) -> anyhow::Result<()> {
    let cmd = Cli::command();
    let Some(dir) = &args.dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        use std::io::Write;
        std::io::stdout().write_all(&out)?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    // One page per command: npyfs.1, npyfs-mount.1, ...
    clap_mangen::generate_to(cmd, dir).with_context(|| format!("{}", dir.display()))?;
    println!("wrote the man pages to {}", dir.display());
    Ok(())
}
