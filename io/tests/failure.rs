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
fn write_error_fails_unacknowledged_commits_and_the_shard_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let acked = run(async {
        let s = open(dir.path()).await;
        s.commit(vec![put(0, b"kept", b"sum", b"body")])
            .await
            .unwrap();
        let mut acked = vec![b"kept".to_vec()];
        set_file_size_limit(1 << 20);
        let mut first_err = None;
        for i in 0..1000u32 {
            let key = format!("k{i}").into_bytes();
            match s.commit(vec![put(0, &key, b"", &[7; 10_000])]).await {
                Ok(_) => acked.push(key),
                Err(e) => {
                    first_err = Some(e);
                    break;
                }
            }
        }
        // The committer whose write failed is told so: not acknowledged.
        assert!(
            matches!(first_err, Some(IoError::WriteFailed)),
            "{first_err:?}"
        );
        set_file_size_limit(u64::MAX);
        // The shard cut its log back to the durable prefix and started a
        // new segment by itself: it takes writes again.
        let mut tries = 0;
        while !s.is_writable() {
            tries += 1;
            assert!(tries < 500, "the shard never became writable again");
            monoio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        s.commit(vec![put(0, b"after", b"", b"again")]).await.unwrap();
        acked.push(b"after".to_vec());
        assert_eq!(s.stats().resets, 1);
        // Reads kept working, and every acknowledged write is there.
        assert_eq!(
            s.load(0, b"kept").await.unwrap().unwrap().body,
            Body::Inline(b"body".to_vec())
        );
        for k in &acked {
            assert!(s.get(0, k).is_some(), "{}", String::from_utf8_lossy(k));
        }
        acked
    });
    // Reopen: everything acknowledged is there, and the cut left no damage.
    run(async {
        let s = open(dir.path()).await;
        let st = s.stats();
        assert_eq!(st.recovery.corrupt_regions, 0, "{st:?}");
        assert_eq!(st.recovery.lost_commits, 0, "{st:?}");
        for k in &acked {
            assert!(s.load(0, k).await.unwrap().is_some());
        }
        s.commit(vec![put(0, b"later", b"", b"")]).await.unwrap();
    });
}
