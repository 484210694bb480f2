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
  npyfs inspect arrays.toml --json          # validate and describe without mounting
  npyfs export arrays.toml all.npy out.npy  # write a real .npy file, no mount needed
  mount -t fuse.npyfs arrays.toml /mnt/npy -o allow_other   # via /sbin/mount.fuse.npyfs";

const MOUNT_EXAMPLES: &str = "\
Examples:
  npyfs mount arrays.toml /mnt/npy
  npyfs mount shards/ /mnt/npy --foreground --threads 4
  npyfs mount arrays.toml /mnt/npy --allow-other --log-file /var/log/npyfs.log
  npyfs mount arrays.toml /mnt/npy -o allow_other,threads=8,log_file=/var/log/npyfs.log

Options with -o (the mount(8) / fstab syntax, comma-separated, repeatable; they win
over the flags): allow_other, default_permissions, threads=N, log_file=PATH,
read_ahead_kb=KIB, max_maps=N, writable, watch_interval=SECS, drop_part_cache.
Generic mount flags (ro, rw, defaults, noauto, auto, user, users, nofail, _netdev, dev,
suid, exec, atime, noatime, x-*, ...) are accepted and ignored: npyfs always mounts
nosuid, nodev, and read-only unless writable is given.

As a mount(8) helper (installed as a symlink; mount -t fuse.npyfs runs it, and it
always detaches a daemon):
  ln -s \"$(command -v npyfs)\" /sbin/mount.fuse.npyfs
  mount -t fuse.npyfs /data/arrays.toml /mnt/npy -o allow_other
  # /etc/fstab:
  /data/arrays.toml  /mnt/npy  fuse.npyfs  ro,allow_other,threads=8,nofail  0  0

Logs: RUST_LOG=info|debug|trace sets the level (default warn); they go to stderr with
--foreground, else to --log-file (none without it).

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
  npyfs inspect shards/ --json | python -m json.tool
  npyfs inspect arrays.toml --name all.npy --at 4096        # which part serves byte 4096?
  npyfs inspect arrays.toml --name all.npy --at index:12,7  # ... and element [12, 7]?
  npyfs inspect arrays.toml --at=-1,0                        # negative indices count from the end

--at takes a byte offset of the virtual file (4096 or byte:4096) or an element index
(12,7 or index:12,7 or index:5 for one dimension). It prints the part and the byte offset
in that part's file, or says the byte is in the header npyfs generates.";

const EXPORT_EXAMPLES: &str = "\
Examples:
  npyfs export arrays.toml all.npy /data/all.npy
  npyfs export shards/ train /data/train.npy --force     # \"train\" finds train.npy

The file is byte-identical to what the mount serves (np.save of the concatenation).
Runs that come whole from one part are copied in the kernel (copy_file_range: a reflink
on filesystems that support it); interleaved runs go through a buffer. The file is
written under a temporary name beside OUTPUT and renamed at the end, so OUTPUT is never
left half-written. A progress bar shows on a terminal.";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  npyfs completions bash > /etc/bash_completion.d/npyfs
  npyfs completions zsh > \"${fpath[1]}/_npyfs\"
  npyfs completions fish > ~/.config/fish/completions/npyfs.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  npyfs man | man -l -                          # read it now
  npyfs man --dir /usr/local/share/man/man1     # npyfs.1 and npyfs-SUBCOMMAND.1";

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
    /// Write one virtual array to a real .npy file, without mounting
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Print a shell completion script
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per subcommand to a folder
    #[command(after_help = MAN_EXAMPLES)]
    Man(ManArgs),
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
    /// Mount options, mount(8) style: allow_other,threads=N,writable,watch_interval=SECS,noauto,...
    #[arg(short = 'o', value_name = "OPTS", action = clap::ArgAction::Append)]
    pub options: Vec<String>,
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
    /// Print a JSON list instead of a table (with --at: the location as JSON)
    #[arg(long)]
    pub json: bool,
    /// Show which part and part-file byte serve a virtual byte offset (4096, byte:4096)
    /// or an element (12,7, index:12,7)
    #[arg(long, value_name = "OFFSET_OR_INDEX", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// The array for --at (its name in the mount; ".npy" may be left out); needed when
    /// the source defines several
    #[arg(long, value_name = "NAME", requires = "at")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A manifest (*.toml) or a folder whose subfolders hold .npy parts
    pub source: PathBuf,
    /// The virtual array to write (its name in the mount; ".npy" may be left out)
    pub name: String,
    /// The .npy file to write
    pub output: PathBuf,
    /// Replace OUTPUT if it exists
    #[arg(short, long)]
    pub force: bool,
    /// Never show a progress bar
    #[arg(short, long)]
    pub quiet: bool,
    /// Gather buffer for interleaved runs, in MiB
    #[arg(long, default_value_t = 8, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub buffer_mib: u32,
    /// Never use copy_file_range (always copy through the buffer)
    #[arg(long)]
    pub no_copy_range: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write npyfs.1 and npyfs-SUBCOMMAND.1 into this folder instead of printing npyfs.1
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The command line mount(8) gives a helper (`mount.fuse.npyfs SOURCE
/// MOUNTPOINT [-sfnv] [-o OPTS]`), parsed when npyfs runs under that name.
#[derive(Debug, Parser)]
#[command(
    name = "mount.fuse.npyfs",
    about = "mount(8) helper for npyfs (a symlink to npyfs)"
)]
pub struct HelperCli {
    /// A manifest (*.toml) or a folder whose subfolders hold .npy parts
    pub source: PathBuf,
    /// The mount point
    pub mountpoint: PathBuf,
    /// Mount options (see npyfs mount --help)
    #[arg(short = 'o', value_name = "OPTS", action = clap::ArgAction::Append)]
    pub options: Vec<String>,
    /// Fake: do everything but mount (mount -f)
    #[arg(short = 'f')]
    pub fake: bool,
    /// Do not write /etc/mtab (ignored)
    #[arg(short = 'n')]
    pub no_mtab: bool,
    /// Sloppy: ignore unknown options (ignored: npyfs accepts generic ones)
    #[arg(short = 's')]
    pub sloppy: bool,
    /// Verbose (ignored)
    #[arg(short = 'v')]
    pub verbose: bool,
}

/// Whether the program was started as a mount(8) helper, by its name.
pub fn invoked_as_helper(argv0: &std::ffi::OsStr) -> bool {
    let name = std::path::Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name == "mount.fuse.npyfs" || name == "mount.npyfs"
}

impl HelperCli {
    /// The equivalent `npyfs mount` arguments: a daemon, never --foreground.
    pub fn into_mount_args(self) -> MountArgs {
        MountArgs {
            source: self.source,
            mountpoint: self.mountpoint,
            foreground: false,
            allow_other: false,
            threads: 4,
            log_file: None,
            read_ahead_kb: 1024,
            max_maps: 1024,
            writable: false,
            watch_interval: 1.0,
            drop_part_cache: false,
            options: self.options,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
        HelperCli::command().debug_assert();
    }

    #[test]
    fn options_after_positionals() {
        let cli = Cli::try_parse_from([
            "npyfs",
            "mount",
            "src.toml",
            "/mnt",
            "-o",
            "ro,allow_other",
            "-o",
            "threads=2",
        ])
        .expect("parse");
        let Command::Mount(m) = cli.command else {
            panic!("not mount")
        };
        assert_eq!(m.options, ["ro,allow_other", "threads=2"]);
        assert!(!m.foreground);
    }

    #[test]
    fn helper_argv() {
        for argv0 in ["/sbin/mount.fuse.npyfs", "mount.npyfs"] {
            assert!(invoked_as_helper(std::ffi::OsStr::new(argv0)));
        }
        assert!(!invoked_as_helper(std::ffi::OsStr::new("/usr/bin/npyfs")));
        let h = HelperCli::try_parse_from([
            "mount.fuse.npyfs",
            "/data/a.toml",
            "/mnt/npy",
            "-n",
            "-o",
            "rw,allow_other",
        ])
        .expect("parse");
        assert!(!h.fake);
        let m = h.into_mount_args();
        assert_eq!(m.options, ["rw,allow_other"]);
        assert!(!m.foreground, "a helper always detaches");
        assert_eq!(m.source, PathBuf::from("/data/a.toml"));

        // The helper's defaults are `npyfs mount`'s.
        let Command::Mount(d) = Cli::try_parse_from(["npyfs", "mount", "/data/a.toml", "/mnt/npy"])
            .expect("parse")
            .command
        else {
            panic!("not mount")
        };
        assert_eq!(
            (
                d.threads,
                d.read_ahead_kb,
                d.max_maps,
                d.allow_other,
                d.log_file
            ),
            (
                m.threads,
                m.read_ahead_kb,
                m.max_maps,
                m.allow_other,
                m.log_file
            )
        );
    }

    #[test]
    fn inspect_at_negative() {
        let cli =
            Cli::try_parse_from(["npyfs", "inspect", "s.toml", "--at", "-1,0"]).expect("parse");
        let Command::Inspect(i) = cli.command else {
            panic!("not inspect")
        };
        assert_eq!(i.at.as_deref(), Some("-1,0"));
    }
}
