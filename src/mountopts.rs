//! The `-o` option syntax of mount(8) and /etc/fstab
//! (`-o allow_other,threads=4,ro,noauto`), so that `mount -t fuse.npyfs`
//! and fstab lines work. npyfs options set the mount's configuration;
//! generic mount flags that make sense for any filesystem line are accepted
//! and ignored (npyfs mounts are always read-only, nosuid, nodev);
//! anything else is an error naming the option.

use std::fmt;
use std::path::PathBuf;

/// What `-o` lists asked for; `None` leaves the command-line value alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MountOptions {
    pub allow_other: bool,
    pub threads: Option<usize>,
    pub log_file: Option<PathBuf>,
    pub read_ahead_kb: Option<u32>,
    pub max_maps: Option<usize>,
    pub writable: bool,
    pub drop_part_cache: bool,
    /// Seconds; 0 turns watching off.
    pub watch_interval: Option<f64>,
    /// Generic options accepted and ignored, for a log line.
    pub ignored: Vec<String>,
}

/// A bad `-o` entry and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    pub option: String,
    pub reason: String,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mount option \"{}\": {}", self.option, self.reason)
    }
}

impl std::error::Error for OptionError {}

/// npyfs's own options, as `-o` spells them.
pub const NPYFS_OPTIONS: &[&str] = &[
    "allow_other",
    "default_permissions",
    "threads=N",
    "log_file=PATH",
    "read_ahead_kb=KIB",
    "max_maps=N",
    "writable",
    "watch_interval=SECS",
    "drop_part_cache",
];

/// Generic mount(8) / fstab flags accepted and ignored. `x-*` (systemd,
/// udisks) and `comment=*` are accepted too.
const GENERIC: &[&str] = &[
    "defaults",
    "ro",
    "rw",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "nofail",
    "_netdev",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "sync",
    "async",
    "silent",
    "loud",
];

impl MountOptions {
    /// Parse every `-o` argument (each a comma-separated list), later
    /// entries winning.
    pub fn parse<S: AsRef<str>>(lists: &[S]) -> Result<MountOptions, OptionError> {
        let mut opts = MountOptions::default();
        for list in lists {
            for item in list.as_ref().split(',').map(str::trim) {
                if !item.is_empty() {
                    opts.apply(item)?;
                }
            }
        }
        Ok(opts)
    }

    fn apply(&mut self, item: &str) -> Result<(), OptionError> {
        let err = |reason: String| OptionError {
            option: item.to_string(),
            reason,
        };
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        // fstab writers use both spellings.
        let key_norm = key.replace('-', "_");
        match (key_norm.as_str(), value) {
            ("allow_other", None) => self.allow_other = true,
            // Implied by allow_other (the kernel checks the file modes).
            ("default_permissions", None) => self.ignored.push(item.to_string()),
            ("threads", Some(v)) => {
                self.threads = Some(number(v, 1, 256).map_err(err)? as usize);
            }
            ("log_file", Some(v)) => {
                if v.is_empty() {
                    return Err(err("needs a path".into()));
                }
                self.log_file = Some(PathBuf::from(v));
            }
            ("read_ahead_kb", Some(v)) => {
                self.read_ahead_kb = Some(number(v, 0, u64::from(u32::MAX)).map_err(err)? as u32);
            }
            ("max_maps", Some(v)) => {
                self.max_maps = Some(number(v, 1, 60000).map_err(err)? as usize);
            }
            ("writable", None) => self.writable = true,
            ("drop_part_cache", None) => self.drop_part_cache = true,
            ("watch_interval", Some(v)) => {
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| err(format!("\"{v}\" is not a number of seconds")))?;
                self.watch_interval = Some(secs);
            }
            ("allow_other" | "default_permissions" | "writable" | "drop_part_cache", Some(_)) => {
                return Err(err("takes no value".into()));
            }
            ("threads" | "log_file" | "read_ahead_kb" | "max_maps" | "watch_interval", None) => {
                return Err(err(format!("needs a value ({key}=...)")));
            }
            (k, None) if GENERIC.contains(&k) => self.ignored.push(item.to_string()),
            // x-systemd.*, x-gvfs-*, comment=..., and what mount(8) adds
            // for user mounts (user=NAME) or helpers (uhelper=, helper=).
            (k, _)
                if k.starts_with("x_")
                    || matches!(k, "comment" | "user" | "uhelper" | "helper") =>
            {
                self.ignored.push(item.to_string())
            }
            _ => {
                return Err(err(format!(
                    "unknown option; npyfs takes {} and the generic mount flags \
                     (ro, rw, noauto, nofail, _netdev, user, defaults, ...)",
                    NPYFS_OPTIONS.join(", ")
                )))
            }
        }
        Ok(())
    }
}

fn number(v: &str, min: u64, max: u64) -> Result<u64, String> {
    let n: u64 = v
        .parse()
        .map_err(|_| format!("\"{v}\" is not a whole number"))?;
    if n < min || n > max {
        return Err(format!("{n} is outside {min}..={max}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_line() {
        let o =
            MountOptions::parse(&["ro,noauto,allow_other,threads=8,x-systemd.automount,_netdev"])
                .expect("parse");
        assert!(o.allow_other);
        assert_eq!(o.threads, Some(8));
        assert_eq!(
            o.ignored,
            ["ro", "noauto", "x-systemd.automount", "_netdev"]
        );
        let o = MountOptions::parse(&["user=alice,comment=x,defaults"]).expect("parse");
        assert_eq!(o.ignored, ["user=alice", "comment=x", "defaults"]);
    }

    #[test]
    fn every_generic_flag_is_accepted() {
        for flag in GENERIC {
            let o = MountOptions::parse(&[*flag]).expect(flag);
            assert_eq!(o.ignored, [*flag]);
            assert!(!o.allow_other);
        }
    }

    #[test]
    fn values() {
        let o = MountOptions::parse(&[
            "log_file=/var/log/npyfs.log,read_ahead_kb=0",
            "max-maps=99,threads=2",
            "threads=3",
        ])
        .expect("parse");
        assert_eq!(o.log_file, Some(PathBuf::from("/var/log/npyfs.log")));
        assert_eq!(o.read_ahead_kb, Some(0));
        assert_eq!(o.max_maps, Some(99));
        assert_eq!(o.threads, Some(3), "later entries win");
    }

    #[test]
    fn write_through_and_watch_options() {
        let o =
            MountOptions::parse(&["writable,watch_interval=0.5,drop_part_cache"]).expect("parse");
        assert!(o.writable && o.drop_part_cache);
        assert_eq!(o.watch_interval, Some(0.5));
        assert!(
            !MountOptions::parse(&["rw"]).expect("rw").writable,
            "rw alone is not writable"
        );
        for bad in [
            "watch_interval=soon",
            "watch_interval=-1",
            "watch_interval",
            "writable=1",
        ] {
            let e = MountOptions::parse(&[bad]).expect_err(bad);
            assert_eq!(e.option, bad);
        }
    }

    #[test]
    fn empty_entries_are_skipped() {
        assert_eq!(
            MountOptions::parse(&[",,", ""]).expect("parse"),
            MountOptions::default()
        );
    }

    #[test]
    fn errors_name_the_option() {
        let e = MountOptions::parse(&["ro,bogus"]).expect_err("unknown");
        assert_eq!(e.option, "bogus");
        assert!(e.to_string().contains("unknown option"), "{e}");
        assert!(e.to_string().contains("threads=N"), "{e}");

        for (bad, why) in [
            ("threads=0", "outside"),
            ("threads=x", "not a whole number"),
            ("threads", "needs a value"),
            ("allow_other=1", "takes no value"),
            ("max_maps=70000", "outside"),
            ("log_file=", "needs a path"),
            ("ro=1", "unknown option"),
        ] {
            let e = MountOptions::parse(&[bad]).expect_err(bad);
            assert_eq!(e.option, bad);
            assert!(e.reason.contains(why), "{bad}: {e}");
        }
    }
}
