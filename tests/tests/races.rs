//! Races between writes and the operations that remove their container:
//! no write may be acknowledged into something that is then gone.

use tessera_tests::*;

/// PUTs racing DeleteBucket: if DeleteBucket answers 204, no PUT may have
/// answered 200 (its object would be unreachable), and the other way round.
#[tokio::test(flavor = "multi_thread")]
async fn delete_bucket_never_strands_an_acknowledged_put() {
    let server = Server::start();
    let s3 = server.client();
    const ROUNDS: usize = 40;
    const PUTS: usize = 12;
    let mut deleted_rounds = 0;
    for round in 0..ROUNDS {
        let bucket = format!("gate-{round}");
        ok(s3.create_bucket().bucket(&bucket).send().await, "create");
        let mut puts = Vec::new();
        for i in 0..PUTS {
            let (s3, bucket) = (s3.clone(), bucket.clone());
            puts.push(tokio::spawn(async move {
                s3.put_object().bucket(&bucket).key(format!("k{i}")).body(bytestream(b"x")).send().await.is_ok()
            }));
        }
        // Aim the delete into the middle of the PUTs' commits.
        tokio::time::sleep(std::time::Duration::from_micros((round as u64 % 8) * 250)).await;
        let deleted = s3.delete_bucket().bucket(&bucket).send().await.is_ok();
        let mut acked = 0;
        for p in puts {
            acked += p.await.unwrap() as usize;
        }
        if deleted {
            deleted_rounds += 1;
            assert_eq!(acked, 0, "round {round}: DeleteBucket succeeded but {acked} PUTs were acknowledged into it");
            let e = s3.head_bucket().bucket(&bucket).send().await;
            assert!(e.is_err(), "deleted bucket still answers");
        } else {
            // The bucket stays, with every acknowledged object readable.
            let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
            assert_eq!(listed.key_count(), Some(acked as i32), "round {round}");
        }
    }
    eprintln!("{deleted_rounds} of {ROUNDS} rounds deleted the bucket");
}
