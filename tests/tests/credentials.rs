//! Root credentials generated on first start, persisted, reused.

use std::os::unix::fs::PermissionsExt;

use tessera_tests::*;

/// Tokens of the credentials file that could be a key: runs of characters
/// used in access and secret keys, at least 16 long.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=_-".contains(c)))
        .filter(|t| t.len() >= 16)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_generates_credentials_and_second_start_reuses_them() {
    let mut server = Server::start_with(ServerOpts {
        root_credentials_from_env: false,
        ..Default::default()
    });
    let file = server.data_dirs()[0].join("credentials");
    let meta = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "credentials file mode");
    let text = std::fs::read_to_string(&file).expect("credentials file is text");

    // Find the pair in the file that the server accepts.
    let candidates = tokens(&text);
    assert!(candidates.len() >= 2, "no key pair in {text:?}");
    let mut found = None;
    'outer: for ak in &candidates {
        for sk in &candidates {
            if ak != sk && server.client_for(ak, sk).list_buckets().send().await.is_ok() {
                found = Some((ak.clone(), sk.clone()));
                break 'outer;
            }
        }
    }
    let (ak, sk) = found.expect("the credentials in the file are accepted by the server");
    assert!(
        ak.len() >= 16 && sk.len() >= 30,
        "generated keys are too short: {} / {}",
        ak.len(),
        sk.len()
    );
    server.set_credentials(&ak, &sk);

    // stdout is not a terminal here (as under a service manager, whose logs
    // others may read): the secret is not printed, only where it is kept.
    let first_output = format!("{}\n{}", server.stdout_lines().join("\n"), server.stderr_since_start());
    assert!(!first_output.contains(&sk), "the generated secret is printed to a non-terminal:\n{first_output}");
    assert!(
        server.stdout_lines().iter().any(|l| l.contains(&file.display().to_string())),
        "stdout tells where the credentials are:\n{first_output}"
    );
    let s3 = server.client();
    ok(
        s3.create_bucket().bucket("made-with-generated").send().await,
        "create bucket",
    );
    // A wrong secret for the generated key fails.
    let wrong = server.client_for(&ak, &format!("{sk}x"));
    assert_s3_error(wrong.list_buckets().send().await, 403, "SignatureDoesNotMatch");

    server.restart();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "credentials file rewritten on restart"
    );
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let second_output = format!("{}\n{}", server.stdout_lines().join("\n"), server.stderr_since_start());
    assert!(
        !second_output.contains(&sk),
        "the secret is printed again on the second start:\n{second_output}"
    );
    let s3 = server.client();
    let listed = ok(s3.list_buckets().send().await, "same credentials after restart");
    let names: Vec<&str> = listed.buckets().iter().map(|b| b.name().unwrap()).collect();
    assert_eq!(names, vec!["made-with-generated"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_from_env_are_used_and_not_printed() {
    let server = Server::start();
    ok(server.client().list_buckets().send().await, "env credentials accepted");
    let output = format!("{}\n{}", server.stdout_lines().join("\n"), server.stderr_since_start());
    assert!(
        !output.contains(&server.secret_key),
        "the secret from the environment is printed"
    );
    let other = server.client_for("AKIAOTHEROTHEROTHER0", &server.secret_key);
    assert_s3_error(other.list_buckets().send().await, 403, "InvalidAccessKeyId");
}
