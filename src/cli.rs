//! Command-line definition (clap derive). Converted to internal
//! configuration in `main`; nothing here leaks into the core.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Mount many NumPy .npy parts as one virtual .npy file, without copying a byte.";

const LONG_ABOUT: &str = "\
Mount many NumPy .npy parts as one virtual .npy file, without copying a byte.

Each virtual array appears as an ordinary .npy file whose bytes are exactly what
np.save(np.concatenate(parts, axis)) would write; reads are served from the
memory-mapped parts. Any program can read it: np.load(path, mmap_mode='r'), cp,
another language's npy reader.";

const MAIN_EXAMPLES: &str = "\
Examples:
  npyfs mount arrays.toml /mnt/npy          # mount a manifest (daemon)
  npyfs mount shards/ /mnt/npy              # every subfolder X of shards/ becomes X.npy
  python -c \"import numpy as np; print(np.load('/mnt/npy/all.npy', mmap_mode='r').shape)\"
  npyfs unmount /mnt/npy
  npyfs inspect arrays.toml --json          # validate and describe without mounting";

const MOUNT_EXAMPLES: &str = "\
Examples:
  npyfs mount arrays.toml /mnt/npy
  npyfs mount shards/ /mnt/npy --foreground --threads 4
  npyfs mount arrays.toml /mnt/npy --allow-other --log-file /var/log/npyfs.log

Manifest (TOML):
  [[array]]
  name = \"all.npy\"                  # path inside the mount (may contain folders)
  parts = [\"a.npy\", \"more/*.npy\"]   # paths or globs, relative to the manifest, natural order
  axis = 0                          # default 0; negative counts from the end
  stack = false                     # true: np.stack instead of np.concatenate

  [[array]]
  name = \"raw.npy\"                  # raw files written by np.memmap / ndarray.tofile
  axis = 1
  parts = [ { path = \"a.array\", dtype = \"<f8\", shape = [5000, 3000] },
            { path = \"b.array\", dtype = \"<f8\", shape = [5000, 1000], order = \"C\", offset = 0 } ]

Folder mode: every subfolder X of the folder holding .npy files appears as X.npy (parts
in natural order, axis 0); arrays of FOLDER/npyfs.toml are added and win on a name clash.";

const UNMOUNT_EXAMPLES: &str = "\
Examples:
  npyfs unmount /mnt/npy     # also clears a stale mount left by a killed daemon";

const INSPECT_EXAMPLES: &str = "\
Examples:
  npyfs inspect arrays.toml
  npyfs inspect shards/ --json | python -m json.tool";

#[derive(Debug, Parser)]
#[command(name = "npyfs", version, about = ABOUT, long_about = LONG_ABOUT, after_help = MAIN_EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a manifest or a folder of parts; without --foreground, return once the mount is live
    #[command(after_help = MOUNT_EXAMPLES)]
    Mount(MountArgs),
    /// Unmount a mount point (lazily, so it works while files are still mapped)
    #[command(after_help = UNMOUNT_EXAMPLES)]
    Unmount(UnmountArgs),
    /// Validate a manifest or folder without mounting and describe each virtual array
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// A manifest (*.toml) or a folder whose subfolders hold .npy parts
    pub source: PathBuf,
    /// An existing empty directory to mount on
    pub mountpoint: PathBuf,
    /// Stay in the foreground (logs to stderr) instead of detaching a daemon
    #[arg(short, long)]
    pub foreground: bool,
    /// Let other users access the mount; the kernel then checks file modes (default_permissions)
    #[arg(long)]
    pub allow_other: bool,
    /// Worker threads serving requests
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Write logs here (daemon mode; RUST_LOG sets the level, default "warn")
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Kernel readahead for the mount, in KiB (sets the mount's bdi read_ahead_kb; 0 keeps the kernel's)
    #[arg(long, default_value_t = 1024, value_name = "KIB")]
    pub read_ahead_kb: u32,
    /// Let writes through to the parts (np.load(mmap_mode='r+'), write(2)); the header and size stay fixed
    #[arg(long)]
    pub writable: bool,
    /// Seconds between looks for changed parts, folders and manifests (0: never)
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub watch_interval: f64,
    /// Most part files kept memory-mapped at once
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=60000))]
    pub max_maps: u32,
    /// Evict the parts' pages from the page cache once served (MADV_PAGEOUT), so data read
    /// through the mount is cached once, as the virtual file; needs write access to or
    /// ownership of the part files (else a no-op)
    #[arg(long)]
    pub drop_part_cache: bool,
}

#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// The mount point
    pub mountpoint: PathBuf,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A manifest (*.toml) or a folder whose subfolders hold .npy parts
    pub source: PathBuf,
    /// Print a JSON list instead of a table
    #[arg(long)]
    pub json: bool,
}
