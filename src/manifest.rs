//! Manifests and folder scanning: turn a TOML manifest (or a folder of folders of
//! `.npy` parts) into validated [`ArraySpec`]s.
//!
//! This module never parses `.npy` data: it only reads the manifest, lists
//! directories and checks that part files exist. Every error is a
//! [`ManifestError`] naming the file it is about (the manifest, the folder, or
//! the part file) and, in its message, the array and the field.
//!
//! # Manifest format
//!
//! ```toml
//! [[array]]
//! name = "all.npy"                  # path inside the mount, may contain folders, must end in .npy
//! parts = ["a.npy", "more/*.npy"]   # paths or globs relative to the manifest
//! axis = 0                          # default 0; negative counts from the end
//! stack = false                     # true: np.stack instead of np.concatenate
//!
//! [[array]]
//! name = "raw.npy"
//! axis = 1
//! parts = [
//!   { path = "a.array", dtype = "<f8", shape = [5000, 3000] },
//!   { path = "b.array", dtype = "<f8", shape = [5000, 1000], order = "C", offset = 0 },
//! ]
//! ```
//!
//! Details:
//! * Relative part paths resolve against the manifest's folder; absolute paths are kept.
//!   `~` is not expanded.
//! * A string part containing `*`, `?` or `[` is a glob, unless a file with exactly
//!   that name exists (then it is taken literally). Globs support `*`, `?`, `[...]`
//!   within a path component and `**` as a whole component (any number of folders).
//!   Wildcards do not match names starting with `.` (as in a shell). Only files
//!   match (symlinks are followed). Matches are sorted in natural order, component
//!   by component (`p2` < `p10`); a glob must match at least one file.
//! * A string part without glob characters must exist and be a file.
//! * Array names are normalized: `.` components are dropped; empty components,
//!   `..`, absolute names and names not ending in `.npy` are errors.
//! * Returned arrays are sorted by name.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use toml::{Table, Value};

/// Name of the optional manifest inside a folder given to [`scan_folder`].
pub const FOLDER_MANIFEST: &str = "npyfs.toml";

/// One part of a virtual array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartSpec {
    /// A `.npy` file (header parsed later).
    Npy { path: PathBuf },
    /// A raw file (e.g. written by `np.memmap` / `ndarray.tofile`) described by the manifest.
    Raw {
        path: PathBuf,
        dtype: String,
        shape: Vec<u64>,
        fortran_order: bool,
        offset: u64,
    },
}

impl PartSpec {
    /// The (resolved) path of the part file.
    pub fn path(&self) -> &Path {
        match self {
            PartSpec::Npy { path } | PartSpec::Raw { path, .. } => path,
        }
    }
}

/// A validated definition of one virtual array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArraySpec {
    /// Path inside the mount: relative, `/`-separated, no empty, `.` or `..`
    /// components, ends with `.npy`.
    pub name: String,
    /// Parts in listed order, paths resolved, globs expanded in natural order.
    pub parts: Vec<PartSpec>,
    /// Axis as given (may be negative, counting from the end as in numpy).
    pub axis: i64,
    /// `true`: `np.stack` (new axis at `axis`); `false`: `np.concatenate`.
    pub stack: bool,
    /// The manifest file that defined the array, or for folder-mode arrays the
    /// subfolder holding its parts.
    pub origin: PathBuf,
}

/// An error in a manifest or a scanned folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ManifestError {
    /// The manifest, folder or part file the error is about.
    pub path: PathBuf,
    /// What is wrong, naming the array and field where applicable.
    pub message: String,
}

impl ManifestError {
    /// Build an error about `path`.
    pub fn new(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ManifestError {
            path: path.into(),
            message: message.into(),
        }
    }
}

type Result<T, E = ManifestError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// Load a TOML manifest. Relative part paths resolve against the manifest's folder.
/// The result is sorted by array name.
pub fn load_manifest(path: &Path) -> Result<Vec<ArraySpec>> {
    let path = absolute(path)?;
    let bytes = fs::read(&path)
        .map_err(|e| ManifestError::new(&path, format!("cannot read manifest: {}", io_msg(&e))))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let bytes = e.as_bytes();
            let valid = e.utf8_error().valid_up_to();
            let prefix = bytes
                .get(..valid)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or("");
            let (line, col) = line_col(prefix, prefix.len());
            return Err(ManifestError::new(
                &path,
                format!(
                    "manifest is not valid UTF-8 (first bad byte at line {line}, column {col})"
                ),
            ));
        }
    };
    let table: Table = text.parse().map_err(|e: toml::de::Error| {
        let reason = one_line(e.message());
        let message = match e.span() {
            Some(span) => {
                let (line, col) = line_col(&text, span.start);
                format!("TOML syntax error at line {line}, column {col}: {reason}")
            }
            None => format!("TOML syntax error: {reason}"),
        };
        ManifestError::new(&path, message)
    })?;
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut arrays = parse_manifest(&table, &path, &base)?;
    arrays.sort_by(|a, b| a.name.cmp(&b.name));
    check_prefix_conflicts(&arrays)?;
    Ok(arrays)
}

/// Folder mode: every non-hidden subfolder `X` of `dir` holding `.npy` files
/// (directly in it) becomes `X.npy`, its non-hidden `.npy` files in natural order,
/// concatenated along axis 0. If `dir/npyfs.toml` exists, its arrays are added and
/// win on a name clash. Hidden entries, files directly in `dir`, subfolders without
/// `.npy` files and entries whose names are not UTF-8 are skipped; symlinks are
/// followed. The result is sorted by array name.
pub fn scan_folder(dir: &Path) -> Result<Vec<ArraySpec>> {
    let dir = absolute(dir)?;
    let mut arrays: BTreeMap<String, ArraySpec> = BTreeMap::new();

    for (name, sub) in list_dir(&dir)? {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !sub.is_dir() {
            continue;
        }
        let mut files: Vec<PathBuf> = Vec::new();
        for (file_name, file) in list_dir(&sub)? {
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if !file_name.starts_with('.') && file_name.ends_with(".npy") && file.is_file() {
                files.push(file);
            }
        }
        if files.is_empty() {
            continue;
        }
        files.sort_by(|a, b| path_natural_cmp(a, b));
        let array_name = format!("{name}.npy");
        arrays.insert(
            array_name.clone(),
            ArraySpec {
                name: array_name,
                parts: files
                    .into_iter()
                    .map(|path| PartSpec::Npy { path })
                    .collect(),
                axis: 0,
                stack: false,
                origin: sub,
            },
        );
    }

    let manifest = dir.join(FOLDER_MANIFEST);
    if manifest.is_file() {
        for array in load_manifest(&manifest)? {
            arrays.insert(array.name.clone(), array);
        }
    }

    if arrays.is_empty() {
        return Err(ManifestError::new(
            &dir,
            format!("no arrays: no subfolder holding .npy files and no {FOLDER_MANIFEST}"),
        ));
    }
    let arrays: Vec<ArraySpec> = arrays.into_values().collect();
    check_prefix_conflicts(&arrays)?;
    Ok(arrays)
}

/// A folder goes to [`scan_folder`], anything else to [`load_manifest`].
pub fn load_source(path: &Path) -> Result<Vec<ArraySpec>> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => scan_folder(path),
        Ok(_) => load_manifest(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(ManifestError::new(path, "no such file or folder"))
        }
        Err(e) => Err(ManifestError::new(
            path,
            format!("cannot access: {}", io_msg(&e)),
        )),
    }
}

/// Natural ("human") string order: runs of ASCII digits compare by numeric value
/// (`p2` < `p10` < `p10b`), everything else byte-wise (i.e. by code point).
/// Strings equal under that rule (e.g. `p02` and `p2`) are ordered by plain string
/// order, so this is a total order consistent with `==`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    natural_key_cmp(a.as_bytes(), b.as_bytes()).then_with(|| a.cmp(b))
}

// ---------------------------------------------------------------------------
// Natural order helpers
// ---------------------------------------------------------------------------

/// Compare as sequences of tokens, a token being a maximal ASCII digit run (compared
/// numerically) or a single byte. A digit run compared with a non-digit byte compares
/// as its first digit: digits are contiguous in byte order, so this places all
/// numbers at one consistent spot among bytes and keeps the order transitive.
fn natural_key_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (na, ra) = split_digits(a);
                let (nb, rb) = split_digits(b);
                let (na, nb) = (trim_zeros(na), trim_zeros(nb));
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = ra;
                b = rb;
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = a.get(1..).unwrap_or_default();
                b = b.get(1..).unwrap_or_default();
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    s.split_at_checked(n).unwrap_or((s, &[]))
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    s.get(n..).unwrap_or_default()
}

fn os_natural_cmp(a: &OsStr, b: &OsStr) -> Ordering {
    natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()).then_with(|| a.cmp(b))
}

/// Component-wise natural order of paths.
fn path_natural_cmp(a: &Path, b: &Path) -> Ordering {
    let mut ia = a.components();
    let mut ib = b.components();
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = os_natural_cmp(x.as_os_str(), y.as_os_str());
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Manifest parsing
// ---------------------------------------------------------------------------

const ARRAY_KEYS: &[&str] = &["name", "parts", "axis", "stack"];
const RAW_KEYS: &[&str] = &["path", "dtype", "shape", "order", "offset"];

/// Where the array being parsed comes from.
struct Ctx<'a> {
    manifest: &'a Path,
    base: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> ManifestError {
        ManifestError::new(self.manifest, message)
    }
}

fn parse_manifest(table: &Table, manifest: &Path, base: &Path) -> Result<Vec<ArraySpec>> {
    let ctx = Ctx { manifest, base };
    if let Some(key) = table.keys().find(|k| k.as_str() != "array") {
        return Err(ctx.err(format!(
            "unknown key {} at top level (a manifest holds only [[array]] tables)",
            quote(key)
        )));
    }
    let items = match table.get("array") {
        None => {
            return Err(ctx.err("no arrays defined (add at least one [[array]] table)"));
        }
        Some(Value::Array(items)) => items,
        Some(Value::Table(_)) => {
            return Err(
                ctx.err("\"array\" must be an array of tables: write [[array]], not [array]")
            );
        }
        Some(other) => {
            return Err(ctx.err(format!(
                "\"array\" must be an array of tables ([[array]]), found {}",
                other.type_str()
            )));
        }
    };
    if items.is_empty() {
        return Err(ctx.err("no arrays defined (add at least one [[array]] table)"));
    }

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut arrays = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::Table(fields) = item else {
            return Err(ctx.err(format!(
                "array[{index}]: expected a table, found {}",
                item.type_str()
            )));
        };
        let array = parse_array(&ctx, index, fields, &mut seen)?;
        arrays.push(array);
    }
    Ok(arrays)
}

fn parse_array(
    ctx: &Ctx<'_>,
    index: usize,
    fields: &Table,
    seen: &mut HashMap<String, usize>,
) -> Result<ArraySpec> {
    let index_label = format!("array[{index}]");
    let raw_name = match fields.get("name") {
        None => {
            return Err(ctx.err(format!("{index_label}: missing required field \"name\"")));
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ctx.err(format!(
                "{index_label}: name: expected a string, found {}",
                other.type_str()
            )));
        }
    };
    let name = normalize_name(raw_name)
        .map_err(|why| ctx.err(format!("{index_label}: name {}: {why}", quote(raw_name))))?;
    let label = format!("array {}", quote(&name));
    if let Some(previous) = seen.get(&name) {
        return Err(ctx.err(format!(
            "{index_label}: name {}: already used by array[{previous}]",
            quote(&name)
        )));
    }
    seen.insert(name.clone(), index);

    if let Some(key) = fields.keys().find(|k| !ARRAY_KEYS.contains(&k.as_str())) {
        return Err(ctx.err(format!(
            "{label}: unknown key {} (expected one of: {})",
            quote(key),
            ARRAY_KEYS.join(", ")
        )));
    }

    let axis = match fields.get("axis") {
        None => 0,
        Some(Value::Integer(i)) => *i,
        Some(other) => {
            return Err(ctx.err(format!(
                "{label}: axis: expected an integer, found {}",
                describe(other)
            )));
        }
    };
    let stack = match fields.get("stack") {
        None => false,
        Some(Value::Boolean(b)) => *b,
        Some(other) => {
            return Err(ctx.err(format!(
                "{label}: stack: expected true or false, found {}",
                describe(other)
            )));
        }
    };

    let items = match fields.get("parts") {
        None => {
            return Err(ctx.err(format!("{label}: missing required field \"parts\"")));
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ctx.err(format!(
                "{label}: parts: expected a list of parts, found {}",
                describe(other)
            )));
        }
    };
    if items.is_empty() {
        return Err(ctx.err(format!(
            "{label}: parts: the list is empty (give at least one part)"
        )));
    }
    let mut parts = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let part_label = format!("{label}: parts[{i}]");
        match item {
            Value::String(s) => parts.extend(resolve_npy_part(ctx, &part_label, s)?),
            Value::Table(t) => parts.push(parse_raw_part(ctx, &part_label, t)?),
            other => {
                return Err(ctx.err(format!(
                    "{part_label}: expected a path string or a table {{ path, dtype, shape }}, found {}",
                    describe(other)
                )));
            }
        }
    }

    Ok(ArraySpec {
        name,
        parts,
        axis,
        stack,
        origin: ctx.manifest.to_path_buf(),
    })
}

fn resolve_npy_part(ctx: &Ctx<'_>, label: &str, s: &str) -> Result<Vec<PartSpec>> {
    if s.is_empty() {
        return Err(ctx.err(format!("{label}: empty path")));
    }
    let literal = clean_join(ctx.base, s);
    if !has_glob_chars(s) || literal.is_file() {
        check_part_file(ctx, label, &literal)?;
        return Ok(vec![PartSpec::Npy { path: literal }]);
    }
    let matches = expand_glob(ctx.base, s).map_err(|e| match e {
        GlobError::Pattern(msg) => ctx.err(format!("{label}: invalid glob {}: {msg}", quote(s))),
        GlobError::Io(dir, err) => ManifestError::new(
            &dir,
            format!(
                "{label}: cannot list folder while expanding glob {} (in {}): {}",
                quote(s),
                ctx.manifest.display(),
                io_msg(&err)
            ),
        ),
    })?;
    if matches.is_empty() {
        return Err(ctx.err(format!("{label}: glob {} matches no file", quote(s))));
    }
    Ok(matches
        .into_iter()
        .map(|path| PartSpec::Npy { path })
        .collect())
}

fn parse_raw_part(ctx: &Ctx<'_>, label: &str, t: &Table) -> Result<PartSpec> {
    if let Some(key) = t.keys().find(|k| !RAW_KEYS.contains(&k.as_str())) {
        return Err(ctx.err(format!(
            "{label}: unknown key {} in raw part (expected one of: {})",
            quote(key),
            RAW_KEYS.join(", ")
        )));
    }
    let path = match t.get("path") {
        None => return Err(ctx.err(format!("{label}: raw part is missing \"path\""))),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(ctx.err(format!("{label}: path: empty path")));
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ctx.err(format!(
                "{label}: path: expected a string, found {}",
                describe(other)
            )));
        }
    };
    let resolved = clean_join(ctx.base, path);
    if has_glob_chars(path) && !resolved.is_file() {
        return Err(ctx.err(format!(
            "{label}: path {}: a raw part's path cannot be a glob (list each file as its own part)",
            quote(path)
        )));
    }
    let dtype = match t.get("dtype") {
        None => {
            return Err(ctx.err(format!(
                "{label}: raw part is missing \"dtype\" (e.g. dtype = \"<f8\")"
            )));
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(ctx.err(format!("{label}: dtype: empty string")));
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ctx.err(format!(
                "{label}: dtype: expected a string such as \"<f8\", found {}",
                describe(other)
            )));
        }
    };
    let shape = match t.get("shape") {
        None => {
            return Err(ctx.err(format!(
                "{label}: raw part is missing \"shape\" (e.g. shape = [5000, 3000])"
            )));
        }
        Some(Value::Array(dims)) => {
            let mut shape = Vec::with_capacity(dims.len());
            for (d, dim) in dims.iter().enumerate() {
                match dim {
                    Value::Integer(n) => match u64::try_from(*n) {
                        Ok(n) => shape.push(n),
                        Err(_) => {
                            return Err(ctx.err(format!(
                                "{label}: shape[{d}]: must not be negative, found {n}"
                            )));
                        }
                    },
                    other => {
                        return Err(ctx.err(format!(
                            "{label}: shape[{d}]: expected a non-negative integer, found {}",
                            describe(other)
                        )));
                    }
                }
            }
            shape
        }
        Some(other) => {
            return Err(ctx.err(format!(
                "{label}: shape: expected a list of non-negative integers, found {}",
                describe(other)
            )));
        }
    };
    let fortran_order = match t.get("order") {
        None => false,
        Some(Value::String(s)) if s == "C" => false,
        Some(Value::String(s)) if s == "F" => true,
        Some(other) => {
            return Err(ctx.err(format!(
                "{label}: order: expected \"C\" or \"F\", found {}",
                describe(other)
            )));
        }
    };
    let offset = match t.get("offset") {
        None => 0,
        Some(Value::Integer(n)) => u64::try_from(*n)
            .map_err(|_| ctx.err(format!("{label}: offset: must not be negative, found {n}")))?,
        Some(other) => {
            return Err(ctx.err(format!(
                "{label}: offset: expected a non-negative integer, found {}",
                describe(other)
            )));
        }
    };
    check_part_file(ctx, label, &resolved)?;
    Ok(PartSpec::Raw {
        path: resolved,
        dtype,
        shape,
        fortran_order,
        offset,
    })
}

/// The part must exist and be a file (symlinks followed). Errors name the part file.
fn check_part_file(ctx: &Ctx<'_>, label: &str, path: &Path) -> Result<()> {
    let listed = ctx.manifest.display();
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(ManifestError::new(
            path,
            format!("{label}: part is a folder, not a file (listed in {listed})"),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ManifestError::new(
            path,
            format!("{label}: part not found (listed in {listed})"),
        )),
        Err(e) => Err(ManifestError::new(
            path,
            format!(
                "{label}: cannot access part (listed in {listed}): {}",
                io_msg(&e)
            ),
        )),
    }
}

/// Validate and normalize an array name (see [`ArraySpec::name`]).
fn normalize_name(name: &str) -> std::result::Result<String, String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    if name.starts_with('/') {
        return Err("must be a relative path inside the mount, not an absolute path".into());
    }
    let mut parts: Vec<&str> = Vec::new();
    for comp in name.split('/') {
        match comp {
            "" => {
                return Err(
                    "must not contain empty path components (\"//\" or a trailing \"/\")".into(),
                )
            }
            "." => {}
            ".." => return Err("must not contain \"..\" components".into()),
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    if joined.is_empty() {
        return Err("must name a file ending in .npy".into());
    }
    if !joined.ends_with(".npy") {
        return Err("must end in .npy".into());
    }
    Ok(joined)
}

/// Error if a name is also a folder prefix of another name ("a.npy" and "a.npy/b.npy").
fn check_prefix_conflicts(arrays: &[ArraySpec]) -> Result<()> {
    let names: HashMap<&str, &ArraySpec> = arrays.iter().map(|a| (a.name.as_str(), a)).collect();
    for array in arrays {
        let mut prefix_end = 0;
        while let Some(pos) = array.name.get(prefix_end..).and_then(|rest| rest.find('/')) {
            let end = prefix_end + pos;
            let prefix = array.name.get(..end).unwrap_or_default();
            if let Some(other) = names.get(prefix) {
                let also = if other.origin == array.origin {
                    String::new()
                } else {
                    format!(" (defined in {})", other.origin.display())
                };
                return Err(ManifestError::new(
                    &array.origin,
                    format!(
                        "array {}: name needs a folder {}, but that path is array {}{also} (a path cannot be both a file and a folder)",
                        quote(&array.name),
                        quote(prefix),
                        quote(&other.name)
                    ),
                ));
            }
            prefix_end = end + 1;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Globs
// ---------------------------------------------------------------------------

enum GlobError {
    Pattern(String),
    Io(PathBuf, io::Error),
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

const GLOB_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// Expand `pattern` (relative to `base` unless absolute) into existing files,
/// sorted component-wise in natural order, without duplicates.
fn expand_glob(base: &Path, pattern: &str) -> std::result::Result<Vec<PathBuf>, GlobError> {
    glob::Pattern::new(pattern).map_err(|e| GlobError::Pattern(e.msg.to_string()))?;
    let mut current: Vec<PathBuf> = vec![if pattern.starts_with('/') {
        PathBuf::from("/")
    } else {
        base.to_path_buf()
    }];
    let comps: Vec<&str> = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    for comp in comps {
        let mut next = Vec::new();
        if comp == "**" {
            let mut visited = HashSet::new();
            for dir in &current {
                collect_dirs(dir, &mut visited, &mut next)?;
            }
        } else if has_glob_chars(comp) {
            let pat =
                glob::Pattern::new(comp).map_err(|e| GlobError::Pattern(e.msg.to_string()))?;
            for dir in &current {
                if !dir.is_dir() {
                    continue;
                }
                for (name, path) in glob_list_dir(dir)? {
                    if name
                        .to_str()
                        .is_some_and(|n| pat.matches_with(n, GLOB_OPTIONS))
                    {
                        next.push(path);
                    }
                }
            }
        } else {
            next = current.iter().map(|d| clean_join(d, comp)).collect();
        }
        current = next;
    }
    // A trailing "**" means every file below.
    if pattern.split('/').next_back() == Some("**") {
        let dirs = std::mem::take(&mut current);
        for dir in dirs {
            for (name, path) in glob_list_dir(&dir)? {
                if !name.to_string_lossy().starts_with('.') {
                    current.push(path);
                }
            }
        }
    }
    let mut seen = HashSet::new();
    let mut files: Vec<PathBuf> = current
        .into_iter()
        .filter(|p| p.is_file() && seen.insert(p.clone()))
        .collect();
    files.sort_by(|a, b| path_natural_cmp(a, b));
    Ok(files)
}

/// `dir` and all its non-hidden subfolders, recursively (symlinks followed, loops cut).
fn collect_dirs(
    dir: &Path,
    visited: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> std::result::Result<(), GlobError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let Ok(canonical) = fs::canonicalize(dir) else {
        return Ok(());
    };
    if !visited.insert(canonical) {
        return Ok(());
    }
    out.push(dir.to_path_buf());
    let entries = glob_list_dir(dir)?;
    for (name, path) in entries {
        if !name.to_string_lossy().starts_with('.') && path.is_dir() {
            collect_dirs(&path, visited, out)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Entries (name, full path) of a folder, in no particular order.
fn read_entries(dir: &Path) -> io::Result<Vec<(OsString, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        out.push((entry.file_name(), entry.path()));
    }
    Ok(out)
}

/// [`read_entries`] with an error naming the folder.
fn list_dir(dir: &Path) -> Result<Vec<(OsString, PathBuf)>> {
    read_entries(dir)
        .map_err(|e| ManifestError::new(dir, format!("cannot read folder: {}", io_msg(&e))))
}

fn glob_list_dir(dir: &Path) -> std::result::Result<Vec<(OsString, PathBuf)>, GlobError> {
    read_entries(dir).map_err(|e| GlobError::Io(dir.to_path_buf(), e))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(ManifestError::new(path, "empty path"));
    }
    std::path::absolute(path)
        .map(|p| lexical_clean(&p))
        .map_err(|e| ManifestError::new(path, format!("cannot resolve path: {}", io_msg(&e))))
}

/// `base.join(rel)` with `.` components dropped (`..` is kept: symlinks make it non-lexical).
fn clean_join(base: &Path, rel: &str) -> PathBuf {
    lexical_clean(&base.join(rel))
}

fn lexical_clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

fn io_msg(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s.get(..i).unwrap_or(&s).to_string(),
        None => s,
    }
}

/// 1-based line and column (in characters) of byte offset `pos` in `text`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = text
        .char_indices()
        .take_while(|(i, _)| *i < pos)
        .map(|(_, c)| c);
    let mut line = 1;
    let mut col = 1;
    for c in before {
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// A short description of a TOML value for "found ..." messages.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {}", quote(s)),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(f) => format!("float {f}"),
        Value::Boolean(b) => format!("boolean {b}"),
        other => other.type_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use tempfile::TempDir;

    fn tmp() -> TempDir {
        tempfile::tempdir().unwrap()
    }

    /// Create a file (and its parents) with dummy content.
    fn touch(dir: &Path, rel: &str) -> PathBuf {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"x").unwrap();
        p
    }

    fn write_manifest(dir: &Path, rel: &str, text: &str) -> PathBuf {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    fn load_err(dir: &Path, text: &str) -> (PathBuf, ManifestError) {
        let m = write_manifest(dir, "m.toml", text);
        let e = load_manifest(&m).unwrap_err();
        (m, e)
    }

    fn assert_msg(e: &ManifestError, words: &[&str]) {
        for w in words {
            assert!(
                e.message.contains(w),
                "message {:?} lacks {:?}",
                e.message,
                w
            );
        }
        assert!(
            !e.message.contains('\n'),
            "multi-line message {:?}",
            e.message
        );
    }

    fn npy(p: PathBuf) -> PartSpec {
        PartSpec::Npy { path: p }
    }

    // ----- natural_cmp -----

    #[test]
    fn natural_cmp_examples() {
        use Ordering::*;
        assert_eq!(natural_cmp("p2", "p10"), Less);
        assert_eq!(natural_cmp("p10", "p10b"), Less);
        assert_eq!(natural_cmp("p2", "p10b"), Less);
        assert_eq!(natural_cmp("p10", "p2"), Greater);
        assert_eq!(natural_cmp("a", "a"), Equal);
        assert_eq!(natural_cmp("", "a"), Less);
        assert_eq!(natural_cmp("p1.npy", "p1_0.npy"), Less);
        assert_eq!(natural_cmp("x9y", "x10y"), Less);
        assert_eq!(natural_cmp("part_0099", "part_100"), Less);
        // numerically equal: tie broken by plain string order, never Equal
        assert_eq!(natural_cmp("p02", "p2"), Less);
        assert_eq!(natural_cmp("p2", "p02"), Greater);
        // huge numbers do not overflow
        assert_eq!(
            natural_cmp(
                "a99999999999999999999999999",
                "a100000000000000000000000000"
            ),
            Less
        );
        let mut v = vec!["p10", "p1", "p2", "p10b", "p0", "p02", "q", "p"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["p", "p0", "p1", "p02", "p2", "p10", "p10b", "q"]);
    }

    #[test]
    fn natural_cmp_is_a_total_order() {
        // Every string over a small alphabet (digits, letters, separators, a
        // multi-byte char) up to length 4.
        let alphabet = ["0", "1", "9", "a", "/", "é"];
        let mut all = vec![String::new()];
        let mut layer = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &layer {
                for c in alphabet {
                    next.push(format!("{s}{c}"));
                }
            }
            all.extend(next.iter().cloned());
            layer = next;
        }
        let mut sorted = all.clone();
        sorted.sort_by(|a, b| natural_cmp(a, b));
        // Consistent with a linear order: for every i < j, sorted[i] < sorted[j].
        // This implies antisymmetry, transitivity and totality on this set.
        for i in 0..sorted.len() {
            assert_eq!(natural_cmp(&sorted[i], &sorted[i]), Ordering::Equal);
            for j in i + 1..sorted.len() {
                assert_eq!(
                    natural_cmp(&sorted[i], &sorted[j]),
                    Ordering::Less,
                    "{:?} vs {:?}",
                    sorted[i],
                    sorted[j]
                );
                assert_eq!(natural_cmp(&sorted[j], &sorted[i]), Ordering::Greater);
            }
        }
    }

    // ----- happy paths -----

    #[test]
    fn globs_expand_in_natural_order() {
        let d = tmp();
        let dir = d.path();
        for f in ["p10.npy", "p2.npy", "p1.npy", ".hidden.npy", "notes.txt"] {
            touch(dir, &format!("more/{f}"));
        }
        touch(dir, "a.npy");
        let m = write_manifest(
            dir,
            "m.toml",
            r#"
[[array]]
name = "all.npy"
parts = ["a.npy", "more/*.npy"]
"#,
        );
        let arrays = load_manifest(&m).unwrap();
        assert_eq!(
            arrays,
            vec![ArraySpec {
                name: "all.npy".into(),
                parts: vec![
                    npy(dir.join("a.npy")),
                    npy(dir.join("more/p1.npy")),
                    npy(dir.join("more/p2.npy")),
                    npy(dir.join("more/p10.npy")),
                ],
                axis: 0,
                stack: false,
                origin: m.clone(),
            }]
        );
    }

    #[test]
    fn glob_across_folders_and_recursive() {
        let d = tmp();
        let dir = d.path();
        for f in [
            "s10/a.npy",
            "s2/b.npy",
            "s2/a.npy",
            "s1/x/deep.npy",
            "s1/z.npy",
        ] {
            touch(dir, f);
        }
        let m = write_manifest(
            dir,
            "m.toml",
            r#"
[[array]]
name = "x.npy"
parts = ["s*/*.npy"]
[[array]]
name = "y.npy"
parts = ["**/*.npy"]
[[array]]
name = "z.npy"
parts = ["s1/**"]
"#,
        );
        let arrays = load_manifest(&m).unwrap();
        let paths = |a: &ArraySpec| -> Vec<PathBuf> {
            a.parts
                .iter()
                .map(|p| p.path().strip_prefix(dir).unwrap().to_path_buf())
                .collect()
        };
        let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            paths(&arrays[0]),
            p(&["s1/z.npy", "s2/a.npy", "s2/b.npy", "s10/a.npy"])
        );
        assert_eq!(
            paths(&arrays[1]),
            p(&[
                "s1/x/deep.npy",
                "s1/z.npy",
                "s2/a.npy",
                "s2/b.npy",
                "s10/a.npy"
            ])
        );
        assert_eq!(paths(&arrays[2]), p(&["s1/x/deep.npy", "s1/z.npy"]));
    }

    #[test]
    fn literal_file_with_glob_characters_is_taken_literally() {
        let d = tmp();
        let dir = d.path();
        touch(dir, "data[1].npy");
        touch(dir, "data1.npy");
        let m = write_manifest(
            dir,
            "m.toml",
            "[[array]]\nname = \"a.npy\"\nparts = [\"data[1].npy\"]\n",
        );
        let arrays = load_manifest(&m).unwrap();
        assert_eq!(arrays[0].parts, vec![npy(dir.join("data[1].npy"))]);
    }

    #[test]
    fn nested_names_and_sorting() {
        let d = tmp();
        let dir = d.path();
        touch(dir, "a.npy");
        let m = write_manifest(
            dir,
            "m.toml",
            r#"
[[array]]
name = "train/x.npy"
parts = ["a.npy"]
[[array]]
name = "./test/deep/./y.npy"
parts = ["./a.npy"]
[[array]]
name = "b.npy"
parts = ["a.npy"]
"#,
        );
        let arrays = load_manifest(&m).unwrap();
        let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["b.npy", "test/deep/y.npy", "train/x.npy"]);
        // "./a.npy" resolves to a clean path
        assert_eq!(arrays[1].parts[0].path(), dir.join("a.npy"));
        assert_eq!(
            arrays[1].parts[0].path().to_str().unwrap(),
            dir.join("a.npy").to_str().unwrap()
        );
    }

    #[test]
    fn raw_parts_with_defaults() {
        let d = tmp();
        let dir = d.path();
        touch(dir, "a.array");
        touch(dir, "b.array");
        touch(dir, "c.npy");
        let m = write_manifest(
            dir,
            "m.toml",
            r#"
[[array]]
name = "raw.npy"
axis = 1
parts = [
  { path = "a.array", dtype = "<f8", shape = [5000, 3000] },
  { path = "b.array", dtype = "<f8", shape = [5000, 1000], order = "F", offset = 128 },
  "c.npy",
  { path = "a.array", dtype = "u1", shape = [] },
]
"#,
        );
        let arrays = load_manifest(&m).unwrap();
        assert_eq!(arrays[0].axis, 1);
        assert_eq!(
            arrays[0].parts,
            vec![
                PartSpec::Raw {
                    path: dir.join("a.array"),
                    dtype: "<f8".into(),
                    shape: vec![5000, 3000],
                    fortran_order: false,
                    offset: 0,
                },
                PartSpec::Raw {
                    path: dir.join("b.array"),
                    dtype: "<f8".into(),
                    shape: vec![5000, 1000],
                    fortran_order: true,
                    offset: 128,
                },
                npy(dir.join("c.npy")),
                PartSpec::Raw {
                    path: dir.join("a.array"),
                    dtype: "u1".into(),
                    shape: vec![],
                    fortran_order: false,
                    offset: 0,
                },
            ]
        );
        assert_eq!(arrays[0].parts[1].path(), dir.join("b.array"));
    }

    #[test]
    fn raw_part_explicit_c_order() {
        let d = tmp();
        touch(d.path(), "a.array");
        let m = write_manifest(
            d.path(),
            "m.toml",
            "[[array]]\nname = \"r.npy\"\n[[array.parts]]\npath = \"a.array\"\ndtype = \"<i4\"\nshape = [2, 3]\norder = \"C\"\n",
        );
        let arrays = load_manifest(&m).unwrap();
        assert!(matches!(
            &arrays[0].parts[0],
            PartSpec::Raw { fortran_order: false, shape, .. } if shape == &vec![2, 3]
        ));
    }

    #[test]
    fn relative_paths_resolve_against_manifest_dir() {
        let d = tmp();
        let dir = d.path();
        touch(dir, "shared/s.npy");
        touch(dir, "conf/local.npy");
        let abs = touch(dir, "elsewhere/abs.npy");
        let m = write_manifest(
            dir,
            "conf/m.toml",
            &format!(
                "[[array]]\nname = \"a.npy\"\nparts = [\"local.npy\", \"../shared/s.npy\", {:?}]\n",
                abs.to_str().unwrap()
            ),
        );
        let arrays = load_manifest(&m).unwrap();
        assert_eq!(
            arrays[0].parts,
            vec![
                npy(dir.join("conf/local.npy")),
                npy(dir.join("conf/../shared/s.npy")),
                npy(abs),
            ]
        );
        assert_eq!(arrays[0].origin, m);
    }

    #[test]
    fn negative_axis_and_stack_kept_as_given() {
        let d = tmp();
        touch(d.path(), "a.npy");
        let m = write_manifest(
            d.path(),
            "m.toml",
            "[[array]]\nname = \"a.npy\"\nparts = [\"a.npy\", \"a.npy\"]\naxis = -2\nstack = true\n",
        );
        let arrays = load_manifest(&m).unwrap();
        assert_eq!(arrays[0].axis, -2);
        assert!(arrays[0].stack);
        assert_eq!(arrays[0].parts.len(), 2);
    }

    #[test]
    fn folder_mode_several_subfolders() {
        let d = tmp();
        let dir = d.path();
        touch(dir, "x/p10.npy");
        touch(dir, "x/p2.npy");
        touch(dir, "x/p1.npy");
        touch(dir, "x/.p0.npy"); // hidden: skipped
        touch(dir, "x/readme.txt"); // not .npy: skipped
        touch(dir, "x/nested/n.npy"); // not directly in x: ignored
        touch(dir, "y/only.npy");
        touch(dir, "empty/notes.txt"); // no .npy: skipped
        touch(dir, ".hidden/h.npy"); // hidden folder: skipped
        touch(dir, "top.npy"); // file directly in DIR: skipped
        let outside = tmp();
        touch(outside.path(), "z0.npy");
        std::os::unix::fs::symlink(outside.path(), dir.join("linked")).unwrap();
        std::os::unix::fs::symlink(dir.join("y/only.npy"), dir.join("x/p3.npy")).unwrap();

        let arrays = scan_folder(dir).unwrap();
        let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["linked.npy", "x.npy", "y.npy"]);
        let x = &arrays[1];
        assert_eq!(
            x.parts,
            vec![
                npy(dir.join("x/p1.npy")),
                npy(dir.join("x/p2.npy")),
                npy(dir.join("x/p3.npy")),
                npy(dir.join("x/p10.npy")),
            ]
        );
        assert_eq!((x.axis, x.stack), (0, false));
        assert_eq!(x.origin, dir.join("x"));
        assert_eq!(arrays[0].parts, vec![npy(dir.join("linked/z0.npy"))]);
        // load_source dispatches to scan_folder
        assert_eq!(load_source(dir).unwrap(), arrays);
    }

    #[test]
    fn folder_manifest_wins_on_clash_and_resolves_against_dir() {
        let d = tmp();
        let dir = d.path();
        touch(dir, "x/p1.npy");
        touch(dir, "x/p2.npy");
        touch(dir, "y/q.npy");
        write_manifest(
            dir,
            "npyfs.toml",
            r#"
[[array]]
name = "x.npy"
parts = ["x/p2.npy"]
axis = 1
[[array]]
name = "extra/all.npy"
parts = ["*/*.npy"]
"#,
        );
        let arrays = scan_folder(dir).unwrap();
        let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["extra/all.npy", "x.npy", "y.npy"]);
        assert_eq!(arrays[1].parts, vec![npy(dir.join("x/p2.npy"))]);
        assert_eq!(arrays[1].axis, 1);
        assert_eq!(arrays[1].origin, dir.join("npyfs.toml"));
        assert_eq!(
            arrays[0].parts,
            vec![
                npy(dir.join("x/p1.npy")),
                npy(dir.join("x/p2.npy")),
                npy(dir.join("y/q.npy")),
            ]
        );
        assert_eq!(arrays[2].origin, dir.join("y"));
    }

    #[test]
    fn folder_with_only_npyfs_toml() {
        let d = tmp();
        touch(d.path(), "data/a.array");
        write_manifest(
            d.path(),
            "npyfs.toml",
            "[[array]]\nname = \"r.npy\"\nparts = [{ path = \"data/a.array\", dtype = \"<f4\", shape = [3] }]\n",
        );
        let arrays = scan_folder(d.path()).unwrap();
        assert_eq!(arrays.len(), 1);
        assert_eq!(arrays[0].parts[0].path(), d.path().join("data/a.array"));
    }

    #[test]
    fn load_source_dispatches_to_manifest() {
        let d = tmp();
        touch(d.path(), "a.npy");
        let m = write_manifest(
            d.path(),
            "m.toml",
            "[[array]]\nname = \"a.npy\"\nparts = [\"a.npy\"]\n",
        );
        assert_eq!(load_source(&m).unwrap(), load_manifest(&m).unwrap());
    }

    // ----- errors -----

    #[test]
    fn err_toml_syntax_has_line_and_column() {
        let d = tmp();
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"a.npy\"\nparts = [\"a.npy\"\naxis = \n",
        );
        assert_eq!(e.path, m);
        assert_msg(&e, &["TOML syntax error", "line ", "column "]);
        let (_, e) = load_err(d.path(), "[[array]]\nname = \"a.npy\"\nname = \"b.npy\"\n");
        assert_msg(
            &e,
            &["TOML syntax error at line 3, column 1", "duplicate key"],
        );
        // Display puts the path first
        assert!(e
            .to_string()
            .starts_with(&format!("{}: TOML syntax error", m.display())));
    }

    #[test]
    fn err_unknown_key_in_array() {
        let d = tmp();
        touch(d.path(), "a.npy");
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"a.npy\"\nparts = [\"a.npy\"]\naxes = 1\n",
        );
        assert_eq!(e.path, m);
        assert_msg(&e, &["array \"a.npy\"", "unknown key \"axes\""]);
    }

    #[test]
    fn err_unknown_key_top_level() {
        let d = tmp();
        let (m, e) = load_err(
            d.path(),
            "version = 1\n[[array]]\nname = \"a.npy\"\nparts = []\n",
        );
        assert_eq!(e.path, m);
        assert_msg(&e, &["unknown key \"version\"", "top level"]);
        let (_, e) = load_err(d.path(), "[[arrays]]\nname = \"a.npy\"\n");
        assert_msg(&e, &["unknown key \"arrays\""]);
    }

    #[test]
    fn err_unknown_key_in_raw_part() {
        let d = tmp();
        touch(d.path(), "a.array");
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"r.npy\"\nparts = [{ path = \"a.array\", dtype = \"<f8\", shape = [1], fortran = true }]\n",
        );
        assert_eq!(e.path, m);
        assert_msg(
            &e,
            &["array \"r.npy\"", "parts[0]", "unknown key \"fortran\""],
        );
    }

    #[test]
    fn err_wrong_types() {
        let d = tmp();
        touch(d.path(), "a.npy");
        let cases = [
            ("name = 3\nparts = [\"a.npy\"]", &["array[0]", "name", "expected a string", "integer"][..]),
            ("name = \"a.npy\"\nparts = [\"a.npy\"]\naxis = \"0\"", &["array \"a.npy\"", "axis", "expected an integer", "string \"0\""]),
            ("name = \"a.npy\"\nparts = [\"a.npy\"]\naxis = 1.5", &["axis", "float 1.5"]),
            ("name = \"a.npy\"\nparts = [\"a.npy\"]\nstack = 1", &["stack", "expected true or false", "integer 1"]),
            ("name = \"a.npy\"\nparts = \"a.npy\"", &["parts", "expected a list", "string \"a.npy\""]),
            ("name = \"a.npy\"\nparts = [\"a.npy\", 7]", &["parts[1]", "expected a path string or a table", "integer 7"]),
            ("name = \"a.npy\"\nparts = [{ path = 1, dtype = \"<f8\", shape = [1] }]", &["parts[0]", "path", "expected a string"]),
            ("name = \"a.npy\"\nparts = [{ path = \"a.npy\", dtype = 8, shape = [1] }]", &["parts[0]", "dtype", "expected a string"]),
            ("name = \"a.npy\"\nparts = [{ path = \"a.npy\", dtype = \"<f8\", shape = 5 }]", &["parts[0]", "shape", "expected a list"]),
            ("name = \"a.npy\"\nparts = [{ path = \"a.npy\", dtype = \"<f8\", shape = [1, \"2\"] }]", &["parts[0]", "shape[1]", "non-negative integer"]),
            ("name = \"a.npy\"\nparts = [{ path = \"a.npy\", dtype = \"<f8\", shape = [1, -2] }]", &["parts[0]", "shape[1]", "negative", "-2"]),
            ("name = \"a.npy\"\nparts = [{ path = \"a.npy\", dtype = \"<f8\", shape = [1], offset = -1 }]", &["parts[0]", "offset", "negative"]),
            ("name = \"a.npy\"\nparts = [{ path = \"a.npy\", dtype = \"<f8\", shape = [1], offset = \"0\" }]", &["parts[0]", "offset", "non-negative integer"]),
            ("name = \"a.npy\"\nparts = [\"\"]", &["parts[0]", "empty path"]),
        ];
        for (body, words) in cases {
            let (m, e) = load_err(d.path(), &format!("[[array]]\n{body}\n"));
            assert_eq!(e.path, m, "{body}");
            assert_msg(&e, words);
        }
        let (_, e) = load_err(d.path(), "array = 5\n");
        assert_msg(&e, &["\"array\" must be an array of tables", "integer"]);
        let (_, e) = load_err(d.path(), "array = [1]\n");
        assert_msg(&e, &["array[0]", "expected a table", "integer"]);
    }

    #[test]
    fn err_missing_name() {
        let d = tmp();
        touch(d.path(), "a.npy");
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"a.npy\"\nparts = [\"a.npy\"]\n[[array]]\nparts = [\"a.npy\"]\n",
        );
        assert_eq!(e.path, m);
        assert_msg(&e, &["array[1]", "missing required field \"name\""]);
    }

    #[test]
    fn err_missing_parts() {
        let d = tmp();
        let (m, e) = load_err(d.path(), "[[array]]\nname = \"a.npy\"\n");
        assert_eq!(e.path, m);
        assert_msg(&e, &["array \"a.npy\"", "missing required field \"parts\""]);
    }

    #[test]
    fn err_duplicate_names() {
        let d = tmp();
        touch(d.path(), "a.npy");
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"x/a.npy\"\nparts = [\"a.npy\"]\n[[array]]\nname = \"./x/a.npy\"\nparts = [\"a.npy\"]\n",
        );
        assert_eq!(e.path, m);
        assert_msg(&e, &["array[1]", "\"x/a.npy\"", "already used by array[0]"]);
    }

    #[test]
    fn err_empty_parts() {
        let d = tmp();
        let (m, e) = load_err(d.path(), "[[array]]\nname = \"a.npy\"\nparts = []\n");
        assert_eq!(e.path, m);
        assert_msg(&e, &["array \"a.npy\"", "parts", "empty"]);
    }

    #[test]
    fn err_glob_matches_nothing() {
        let d = tmp();
        touch(d.path(), "a.npy");
        touch(d.path(), "more/.hidden.npy");
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"all.npy\"\nparts = [\"a.npy\", \"more/*.npy\"]\n",
        );
        assert_eq!(e.path, m);
        assert_eq!(
            e.to_string(),
            format!(
                "{}: array \"all.npy\": parts[1]: glob \"more/*.npy\" matches no file",
                m.display()
            )
        );
        // a glob under a missing folder also matches nothing
        let (_, e) = load_err(
            d.path(),
            "[[array]]\nname = \"all.npy\"\nparts = [\"nope/*.npy\"]\n",
        );
        assert_msg(&e, &["glob \"nope/*.npy\" matches no file"]);
    }

    #[test]
    fn err_invalid_glob() {
        let d = tmp();
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"a.npy\"\nparts = [\"p[0-9.npy\"]\n",
        );
        assert_eq!(e.path, m);
        assert_msg(&e, &["parts[0]", "invalid glob \"p[0-9.npy\""]);
    }

    #[test]
    fn err_part_not_found() {
        let d = tmp();
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"a.npy\"\nparts = [\"sub/missing.npy\"]\n",
        );
        assert_eq!(e.path, d.path().join("sub/missing.npy"));
        assert_msg(
            &e,
            &[
                "array \"a.npy\"",
                "parts[0]",
                "part not found",
                &m.display().to_string(),
            ],
        );
        // raw part too
        let (_, e) = load_err(
            d.path(),
            "[[array]]\nname = \"a.npy\"\nparts = [{ path = \"r.array\", dtype = \"<f8\", shape = [1] }]\n",
        );
        assert_eq!(e.path, d.path().join("r.array"));
        assert_msg(&e, &["parts[0]", "part not found"]);
    }

    #[test]
    fn err_part_is_a_folder() {
        let d = tmp();
        fs::create_dir(d.path().join("sub")).unwrap();
        let (_, e) = load_err(d.path(), "[[array]]\nname = \"a.npy\"\nparts = [\"sub\"]\n");
        assert_eq!(e.path, d.path().join("sub"));
        assert_msg(&e, &["parts[0]", "is a folder"]);
    }

    #[test]
    fn err_bad_names() {
        let d = tmp();
        touch(d.path(), "a.npy");
        let cases = [
            ("a.txt", "must end in .npy"),
            ("a.npy/", "empty path components"),
            ("/abs/a.npy", "absolute"),
            ("../a.npy", "\"..\""),
            ("x/../a.npy", "\"..\""),
            ("x//a.npy", "empty path components"),
            ("", "must not be empty"),
            ("./.", "must name a file"),
            (".", "must name a file"),
        ];
        for (name, why) in cases {
            let (m, e) = load_err(
                d.path(),
                &format!("[[array]]\nname = {name:?}\nparts = [\"a.npy\"]\n"),
            );
            assert_eq!(e.path, m);
            assert_msg(&e, &["array[0]", &format!("name {name:?}"), why]);
        }
    }

    #[test]
    fn err_raw_missing_dtype_or_shape() {
        let d = tmp();
        touch(d.path(), "a.array");
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"r.npy\"\nparts = [{ path = \"a.array\", shape = [1] }]\n",
        );
        assert_eq!(e.path, m);
        assert_msg(&e, &["array \"r.npy\"", "parts[0]", "missing \"dtype\""]);
        let (_, e) = load_err(
            d.path(),
            "[[array]]\nname = \"r.npy\"\nparts = [{ path = \"a.array\", dtype = \"<f8\" }]\n",
        );
        assert_msg(&e, &["parts[0]", "missing \"shape\""]);
        let (_, e) = load_err(
            d.path(),
            "[[array]]\nname = \"r.npy\"\nparts = [{ dtype = \"<f8\", shape = [1] }]\n",
        );
        assert_msg(&e, &["parts[0]", "missing \"path\""]);
    }

    #[test]
    fn err_bad_order() {
        let d = tmp();
        touch(d.path(), "a.array");
        for order in ["\"K\"", "\"c\"", "1"] {
            let (m, e) = load_err(
                d.path(),
                &format!("[[array]]\nname = \"r.npy\"\nparts = [{{ path = \"a.array\", dtype = \"<f8\", shape = [1], order = {order} }}]\n"),
            );
            assert_eq!(e.path, m);
            assert_msg(
                &e,
                &["array \"r.npy\"", "parts[0]", "order", "\"C\" or \"F\""],
            );
        }
    }

    #[test]
    fn err_raw_part_glob() {
        let d = tmp();
        touch(d.path(), "a.array");
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"r.npy\"\nparts = [{ path = \"*.array\", dtype = \"<f8\", shape = [1] }]\n",
        );
        assert_eq!(e.path, m);
        assert_msg(&e, &["parts[0]", "\"*.array\"", "cannot be a glob"]);
    }

    #[test]
    fn err_name_is_file_and_folder() {
        let d = tmp();
        touch(d.path(), "a.npy");
        let (m, e) = load_err(
            d.path(),
            "[[array]]\nname = \"a.npy\"\nparts = [\"a.npy\"]\n[[array]]\nname = \"a.npy/b.npy\"\nparts = [\"a.npy\"]\n",
        );
        assert_eq!(e.path, m);
        assert_msg(
            &e,
            &[
                "array \"a.npy/b.npy\"",
                "folder \"a.npy\"",
                "array \"a.npy\"",
            ],
        );
        // deeper prefix
        let (_, e) = load_err(
            d.path(),
            "[[array]]\nname = \"x/a.npy\"\nparts = [\"a.npy\"]\n[[array]]\nname = \"x/a.npy/c/b.npy\"\nparts = [\"a.npy\"]\n",
        );
        assert_msg(&e, &["folder \"x/a.npy\""]);
    }

    #[test]
    fn err_name_is_file_and_folder_across_folder_mode() {
        let d = tmp();
        touch(d.path(), "x/p.npy");
        let m = write_manifest(
            d.path(),
            "npyfs.toml",
            "[[array]]\nname = \"x.npy/inner.npy\"\nparts = [\"x/p.npy\"]\n",
        );
        let e = scan_folder(d.path()).unwrap_err();
        assert_eq!(e.path, m);
        assert_msg(
            &e,
            &["\"x.npy/inner.npy\"", "folder \"x.npy\"", "defined in"],
        );
    }

    #[test]
    fn err_not_utf8() {
        let d = tmp();
        let m = d.path().join("m.toml");
        fs::write(&m, b"[[array]]\nname = \"a\xff.npy\"\n").unwrap();
        let e = load_manifest(&m).unwrap_err();
        assert_eq!(e.path, m);
        assert_msg(&e, &["not valid UTF-8", "line 2, column 10"]);
    }

    #[test]
    fn err_no_arrays() {
        let d = tmp();
        for text in ["", "# nothing\n", "array = []\n"] {
            let (m, e) = load_err(d.path(), text);
            assert_eq!(e.path, m);
            assert_msg(&e, &["no arrays defined", "[[array]]"]);
        }
        let (_, e) = load_err(d.path(), "[array]\nname = \"a.npy\"\nparts = [\"a.npy\"]\n");
        assert_msg(&e, &["[[array]], not [array]"]);
    }

    #[test]
    fn err_folder_with_no_arrays() {
        let d = tmp();
        touch(d.path(), "top.npy");
        touch(d.path(), "sub/readme.txt");
        touch(d.path(), ".hidden/a.npy");
        let e = scan_folder(d.path()).unwrap_err();
        assert_eq!(e.path, d.path());
        assert_msg(&e, &["no subfolder holding .npy files and no npyfs.toml"]);
    }

    #[test]
    fn err_folder_manifest_errors_propagate() {
        let d = tmp();
        touch(d.path(), "x/p.npy");
        let m = write_manifest(
            d.path(),
            "npyfs.toml",
            "[[array]]\nname = \"bad\"\nparts = [\"x/p.npy\"]\n",
        );
        let e = scan_folder(d.path()).unwrap_err();
        assert_eq!(e.path, m);
        assert_msg(&e, &["must end in .npy"]);
    }

    #[test]
    fn err_unreadable_folder() {
        let d = tmp();
        // Not a folder: reading it fails regardless of privileges.
        let f = touch(d.path(), "file");
        let e = scan_folder(&f).unwrap_err();
        assert_eq!(e.path, f);
        assert_msg(&e, &["cannot read folder"]);

        // Permission-based, only meaningful when not running as root.
        use std::os::unix::fs::PermissionsExt;
        touch(d.path(), "ok/a.npy");
        let locked = d.path().join("locked");
        fs::create_dir(&locked).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        let still_readable = fs::read_dir(&locked).is_ok();
        let result = scan_folder(d.path());
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        if !still_readable {
            let e = result.unwrap_err();
            assert_eq!(e.path, locked);
            assert_msg(&e, &["cannot read folder"]);
        }
    }

    #[test]
    fn err_manifest_unreadable() {
        let d = tmp();
        let e = load_manifest(&d.path().join("none.toml")).unwrap_err();
        assert_eq!(e.path, d.path().join("none.toml"));
        assert_msg(&e, &["cannot read manifest"]);
    }

    #[test]
    fn err_load_source_missing() {
        let d = tmp();
        let p = d.path().join("nope");
        let e = load_source(&p).unwrap_err();
        assert_eq!(e.path, p);
        assert_eq!(e.message, "no such file or folder");
        let e = load_source(Path::new("")).unwrap_err();
        assert_eq!(e.message, "no such file or folder");
    }
}
