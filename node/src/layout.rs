//! On-disk layout of a node: data dirs, their format file, shards, and the
//! placement of (bucket, key) on a shard.
//!
//! FORMAT BOUNDARY: `tessera.format` and the partition function decide where
//! every object lives; changing either strands data.

use std::path::{Path, PathBuf};

use twox_hash::XxHash3_64;

pub const FORMAT_FILE: &str = "tessera.format";
/// Lock file in every data dir, exclusively `flock`ed by the process that serves it.
pub const LOCK_FILE: &str = "tessera.lock";
/// Mode of the data dirs this process creates: they hold credentials and data.
pub const DATA_DIR_MODE: u32 = 0o700;
pub const FORMAT_VERSION: u32 = 1;
/// Fixed number of partitions (hash space) of a node.
pub const PARTITIONS: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// The shards of a node, in global shard id order.
#[derive(Debug, Clone)]
pub struct Layout {
    pub shard_dirs: Vec<PathBuf>,
    /// The first shard of each data dir: each keeps a copy of the node's
    /// metadata (the bucket registry), so losing a disk loses none of it.
    pub meta_shards: Vec<u32>,
    /// Format 2 (erasure sets): each lane's online member shards; the
    /// shard ids handlers use are lane indexes then. None on format 1.
    pub lanes: Option<crate::sets_open::LaneLayout>,
}

impl Layout {
    /// (shard id, shard dir, disk index) of every shard that serves the
    /// logical shard `s`: the shard itself on format 1; the lane's online
    /// members, the read primary first, on format 2.
    pub fn members(&self, s: usize) -> Vec<(u32, PathBuf, Option<usize>)> {
        match &self.lanes {
            None => self.shard_dirs.get(s).map(|d| vec![(s as u32, d.clone(), None)]).unwrap_or_default(),
            Some(l) => l
                .lanes
                .get(s)
                .map(|ms| ms.iter().map(|m| (m.id, m.dir.clone(), Some(m.disk))).collect())
                .unwrap_or_default(),
        }
    }

    pub fn total_shards(&self) -> u32 {
        self.shard_dirs.len() as u32
    }

    /// The shard that owns `(bucket, key)`: a stable function of the names.
    pub fn shard_of(&self, bucket: &str, key: &str) -> u32 {
        shard_of(self.total_shards(), bucket, key)
    }
}

pub fn shard_of(total_shards: u32, bucket: &str, key: &str) -> u32 {
    (partition_of(bucket, key) % total_shards as u64) as u32
}

/// The partition of `(bucket, key)`, `0..PARTITIONS`: a node's shard is the
/// partition modulo its shard count; in a cluster the configuration's
/// layout maps it to its owner (`owners`).
pub fn partition_of(bucket: &str, key: &str) -> u64 {
    let mut buf = Vec::with_capacity(bucket.len() + 1 + key.len());
    buf.extend_from_slice(bucket.as_bytes());
    buf.push(0);
    buf.extend_from_slice(key.as_bytes());
    XxHash3_64::oneshot(&buf) % PARTITIONS
}

/// The exclusive lock on one data dir; released when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// Creates missing data dirs (mode 0700; an existing dir that others can read
/// is warned about) and locks each one, so that a second process started on
/// the same dirs by mistake refuses to start instead of appending to the same
/// shards. Call before anything in the dirs is read or written.
pub fn lock_data_dirs(dirs: &[PathBuf]) -> Result<Vec<DirLock>, LayoutError> {
    use std::os::unix::fs::DirBuilderExt;
    let mut locks = Vec::with_capacity(dirs.len());
    for d in dirs {
        let io = |source| LayoutError::Io { path: d.display().to_string(), source };
        std::fs::DirBuilder::new().recursive(true).mode(DATA_DIR_MODE).create(d).map_err(io)?;
        locks.push(lock_dir(d)?);
    }
    Ok(locks)
}

/// Locks one existing data dir. `LayoutError::Invalid` when another
/// process holds it; `LayoutError::Io` when the dir cannot be used.
pub(crate) fn lock_dir(d: &Path) -> Result<DirLock, LayoutError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::os::unix::io::AsRawFd;
    {
        let io = |source| LayoutError::Io { path: d.display().to_string(), source };
        let mode = std::fs::metadata(d).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %d.display(), mode = format!("{mode:o}"), "data dir is accessible by other users; chmod 700 it");
        }
        let path = d.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| LayoutError::Io { path: path.display().to_string(), source })?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                LayoutError::Invalid(format!(
                    "data dir {} is in use by another tessera process (it holds {}); refusing to share it",
                    d.display(),
                    path.display()
                ))
            } else {
                LayoutError::Io { path: path.display().to_string(), source: e }
            });
        }
        Ok(DirLock { _file: file })
    }
}

struct DiskFormat {
    disk: usize,
    disks: usize,
    shards: u32,
}

fn read_format(path: &Path) -> Result<Option<DiskFormat>, LayoutError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LayoutError::Io { path: path.display().to_string(), source }),
    };
    let bad = || LayoutError::Invalid(format!("{} is malformed", path.display()));
    let mut version = None;
    let (mut disk, mut disks, mut shards) = (None, None, None);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        match (it.next(), it.next()) {
            (Some("tessera-format"), Some(v)) => version = v.parse::<u32>().ok(),
            (Some("disk"), Some(v)) => disk = v.parse::<usize>().ok(),
            (Some("disks"), Some(v)) => disks = v.parse::<usize>().ok(),
            (Some("shards"), Some(v)) => shards = v.parse::<u32>().ok(),
            _ => {}
        }
    }
    if version == Some(crate::sets::FORMAT_V2) {
        // Never read a set layout as a plain one: it would misplace every object.
        return Err(LayoutError::Invalid(format!(
            "{}: format 2 (erasure sets) is opened by the server only (tessera server), not by this tool yet",
            path.display()
        )));
    }
    if version != Some(FORMAT_VERSION) {
        return Err(LayoutError::Invalid(format!(
            "{}: unsupported format version {version:?}",
            path.display()
        )));
    }
    match (disk, disks, shards) {
        (Some(disk), Some(disks), Some(shards)) if shards > 0 && disk < disks => {
            Ok(Some(DiskFormat { disk, disks, shards }))
        }
        _ => Err(bad()),
    }
}

fn write_format(path: &Path, f: &DiskFormat) -> Result<(), LayoutError> {
    let text = format!(
        "tessera-format {FORMAT_VERSION}\ndisk {}\ndisks {}\nshards {}\n",
        f.disk, f.disks, f.shards
    );
    write_atomic(path, &text)
}

/// Writes a small file so that a crash leaves the old or the new text:
/// written to `.tmp`, synced, renamed, dir synced.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<(), LayoutError> {
    let io = |source| LayoutError::Io { path: path.display().to_string(), source };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Formats fresh data dirs, or reads the format of existing ones and orders
/// them by their recorded disk index (so the order on the command line does
/// not matter once formatted).
pub fn open_or_format(dirs: &[PathBuf], shards_per_disk: u32) -> Result<Layout, LayoutError> {
    open(dirs, Some(shards_per_disk))
}

/// Reads the format of existing data dirs and changes nothing: a dir that
/// is missing or was never formatted is an error (offline tools use this).
pub fn open_existing(dirs: &[PathBuf]) -> Result<Layout, LayoutError> {
    open(dirs, None)
}

fn open(dirs: &[PathBuf], format_with: Option<u32>) -> Result<Layout, LayoutError> {
    if dirs.is_empty() {
        return Err(LayoutError::Invalid("no data dirs given".into()));
    }
    let mut found = Vec::new();
    for d in dirs {
        if format_with.is_some() {
            std::fs::create_dir_all(d)
                .map_err(|source| LayoutError::Io { path: d.display().to_string(), source })?;
        }
        let f = read_format(&d.join(FORMAT_FILE))?;
        if f.is_none() && format_with.is_none() {
            return Err(LayoutError::Invalid(format!("{} is not a formatted tessera data dir", d.display())));
        }
        found.push(f);
    }
    let formatted = found.iter().filter(|f| f.is_some()).count();
    if let (0, Some(shards_per_disk)) = (formatted, format_with) {
        for (i, d) in dirs.iter().enumerate() {
            let f = DiskFormat { disk: i, disks: dirs.len(), shards: shards_per_disk.max(1) };
            write_format(&d.join(FORMAT_FILE), &f)?;
            found[i] = Some(f);
        }
    } else if formatted != dirs.len() {
        return Err(LayoutError::Invalid(
            "some data dirs are formatted and some are not; adding disks is not supported yet".into(),
        ));
    }
    let mut disks: Vec<(usize, &Path, u32, usize)> = Vec::new();
    for (d, f) in dirs.iter().zip(found.iter().flatten()) {
        disks.push((f.disk, d.as_path(), f.shards, f.disks));
    }
    disks.sort_by_key(|x| x.0);
    for (i, (disk, path, _, n)) in disks.iter().enumerate() {
        if *disk != i || *n != dirs.len() {
            return Err(LayoutError::Invalid(format!(
                "{} is disk {disk} of {n}, but {} data dirs were given",
                path.display(),
                dirs.len()
            )));
        }
    }
    let mut shard_dirs = Vec::new();
    let mut meta_shards = Vec::new();
    for (_, path, shards, _) in &disks {
        meta_shards.push(shard_dirs.len() as u32);
        for s in 0..*shards {
            shard_dirs.push(path.join(format!("shard-{s:04}")));
        }
    }
    Ok(Layout { shard_dirs, meta_shards, lanes: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_2_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [[1u8; 16], [2u8; 16]];
        let f = crate::sets::SetsFormat::fresh([9; 16], &ids, 4, None, 1 << 20).unwrap();
        std::fs::write(dir.path().join(FORMAT_FILE), f[0].to_text()).unwrap();
        let e = open_or_format(&[dir.path().to_path_buf()], 4).unwrap_err().to_string();
        assert!(e.contains("format 2 (erasure sets) is opened by the server only"), "{e}");
    }

    #[test]
    fn placement_is_stable_and_spread() {
        assert_eq!(shard_of(8, "b", "k"), shard_of(8, "b", "k"));
        let mut seen = [0u32; 8];
        for i in 0..8000 {
            seen[shard_of(8, "bucket", &format!("key-{i}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 700), "{seen:?}");
    }
}
