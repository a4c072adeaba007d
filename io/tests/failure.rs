//! A real I/O failure, no mocks: writes past RLIMIT_FSIZE fail with EFBIG.
//! The rlimit is process-wide, so this binary holds this one test only.

mod common;

use common::*;
use tessera_io::{Body, IoError};

fn set_file_size_limit(bytes: u64) {
    // SAFETY: plain libc calls on this process; SIGXFSZ would otherwise kill it.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = bytes.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

#[test]
fn write_error_fails_the_shard_but_reads_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let s = open(dir.path()).await;
        s.commit(vec![put(0, b"kept", b"sum", b"body")])
            .await
            .unwrap();
        set_file_size_limit(1 << 20);
        let mut first_err = None;
        for i in 0..1000u32 {
            if let Err(e) = s
                .commit(vec![put(0, format!("k{i}").as_bytes(), b"", &[7; 10_000])])
                .await
            {
                first_err = Some(e);
                break;
            }
        }
        set_file_size_limit(u64::MAX);
        // The committer whose write failed sees the shard fail.
        assert!(
            matches!(first_err, Some(IoError::ShardFailed)),
            "{first_err:?}"
        );
        assert!(s.stats().failed);
        // No more writes, even now that the disk would take them.
        assert!(matches!(
            s.commit(vec![put(0, b"x", b"", b"")]).await,
            Err(IoError::ShardFailed)
        ));
        assert!(matches!(
            s.write_data(data_buf(b"x")).await,
            Err(IoError::ShardFailed)
        ));
        // Reads keep working.
        assert_eq!(
            s.load(0, b"kept").await.unwrap().unwrap().body,
            Body::Inline(b"body".to_vec())
        );
        assert!(s.get(0, b"k0").is_some());
        s.len(0)
    });
    // Reopen: everything acknowledged is there, the shard takes writes again.
    run(async {
        let s = open(dir.path()).await;
        assert!(s.get(0, b"kept").is_some());
        s.commit(vec![put(0, b"again", b"", b"")]).await.unwrap();
    });
}
