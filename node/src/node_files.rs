//! The node's own files (root credentials, the node key sealing IAM
//! secrets, the SSE master key, the KMS keys file, the cluster node id)
//! are kept in **every** online data dir, not only the first: on an
//! erasure-coded node any dir may be lost, and losing the master key or
//! the node key loses every encrypted object or every IAM secret as
//! surely as losing their data.
//!
//! The **home** dir is the first online dir that is whole (not healing;
//! a disk that comes back stale may hold older copies, e.g. a KMS keys
//! file from before a key was created). Before the files are loaded,
//! each one is taken from the first dir holding it, home first and then
//! the others in order (whole dirs before healing ones), and written to
//! every other online dir where it is missing or differs; the loaders
//! then read (and on a first start create) them in home, and the same
//! spread runs again so that what they created is everywhere. A file
//! changed at run time (a KMS key created) is written to home first and
//! then to the other dirs (`write_everywhere`): home always holds the
//! newest copy, which is why it wins at the next start.
//!
//! Each copy is written to a temporary file, synced, renamed over the
//! old one and its dir synced, so a crash leaves the old or the new copy.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::layout::Layout;

/// The node's files kept in every online dir.
pub const NODE_FILES: [&str; 5] = [
    crate::identity::CREDENTIALS_FILE,
    crate::iam::keys::KEY_FILE,
    crate::sse::kms::MASTER_KEY_FILE,
    crate::sse::kms::KEYS_FILE,
    crate::cluster::NODE_FILE,
];

/// The online data dirs in the order their copies count: whole dirs in
/// the order given, then healing ones. The first is home.
pub fn online_dirs(layout: &Layout, data_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let Some(lanes) = &layout.lanes else { return data_dirs.to_vec() };
    let h = &lanes.health;
    let mut whole = Vec::new();
    let mut healing = Vec::new();
    for (i, d) in h.disks.iter().enumerate() {
        let Some(dir) = &d.dir else { continue };
        if !h.online(i) {
            continue;
        }
        if h.counts(i) {
            whole.push(dir.clone());
        } else {
            healing.push(dir.clone());
        }
    }
    // Disks are in position order; the operator's order of the dirs decides.
    let rank = |p: &PathBuf| data_dirs.iter().position(|d| d == p).unwrap_or(usize::MAX);
    whole.sort_by_key(rank);
    healing.sort_by_key(rank);
    whole.extend(healing);
    whole
}

/// Makes every node file present in any of `dirs` present and equal in
/// all of them, taken from the first dir (in `dirs` order) that holds it.
/// Returns how many copies were written.
pub fn spread(dirs: &[PathBuf]) -> Result<usize, String> {
    let mut written = 0;
    for name in NODE_FILES {
        let mut source = None;
        for d in dirs {
            match std::fs::read(d.join(name)) {
                Ok(bytes) => {
                    source = Some((d, bytes));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", d.join(name).display())),
            }
        }
        let Some((from, bytes)) = source else { continue };
        for d in dirs.iter().filter(|d| *d != from) {
            let path = d.join(name);
            match std::fs::read(&path) {
                Ok(b) if b == bytes => continue,
                Ok(_) => tracing::warn!(file = %path.display(), from = %from.display(), "a node file differs from the copy that counts; it is replaced"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
            write_copy(&path, &bytes)?;
            written += 1;
        }
    }
    Ok(written)
}

/// Writes `bytes` as the file `name` in every dir of `dirs`, the first
/// (home) first; the first error stops it (the caller reports failure;
/// the next start spreads home's copy).
pub fn write_everywhere(dirs: &[PathBuf], name: &str, bytes: &[u8]) -> Result<(), String> {
    for d in dirs {
        write_copy(&d.join(name), bytes)?;
    }
    Ok(())
}

/// One copy: a temporary file (0600) synced, renamed, the dir synced.
pub fn write_copy(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let shown = path.display();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{shown}: {e}"))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| format!("{shown}: {e}"))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| format!("{shown}: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_first_holder_and_fixes_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..3).map(|i| t.path().join(format!("d{i}"))).collect();
        for d in &dirs {
            std::fs::create_dir(d).unwrap();
        }
        // Home lacks the credentials (a new dir); dir 1 has them, dir 2 an older copy.
        std::fs::write(dirs[1].join(NODE_FILES[0]), b"new").unwrap();
        std::fs::write(dirs[2].join(NODE_FILES[0]), b"old").unwrap();
        std::fs::write(dirs[0].join(NODE_FILES[2]), b"master").unwrap();
        assert_eq!(spread(&dirs).unwrap(), 4);
        for d in &dirs {
            assert_eq!(std::fs::read(d.join(NODE_FILES[0])).unwrap(), b"new");
            assert_eq!(std::fs::read(d.join(NODE_FILES[2])).unwrap(), b"master");
            assert!(!d.join(NODE_FILES[1]).exists(), "a file nobody has is not made up");
            let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(d.join(NODE_FILES[2])).unwrap().permissions());
            if d != &dirs[0] {
                assert_eq!(mode & 0o777, 0o600);
            }
        }
        assert_eq!(spread(&dirs).unwrap(), 0, "nothing to do the second time");
        write_everywhere(&dirs, NODE_FILES[3], b"keys").unwrap();
        assert!(dirs.iter().all(|d| std::fs::read(d.join(NODE_FILES[3])).unwrap() == b"keys"));
    }
}
