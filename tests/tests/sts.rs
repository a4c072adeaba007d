//! STS with aws-sdk-sts: GetCallerIdentity, GetSessionToken, AssumeRole
//! (trust policy, session policy, duration limits), temporary credentials
//! in headers and in presigned URLs, tokens refused once expired or when
//! tampered with, and presigned URLs that never grant more than their
//! signer has when they are used.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use tessera_tests::*;

fn sts_server() -> Server {
    Server::start_with(ServerOpts {
        env: vec![("TESSERA_TEST_MIN_SESSION_SECS".into(), "1".into())],
        ..accounts_opts()
    })
}

/// `(access key, secret, token)` of STS credentials.
fn creds(c: Option<&aws_sdk_sts::types::Credentials>) -> (String, String, String) {
    let c = c.expect("credentials");
    (c.access_key_id().to_string(), c.secret_access_key().to_string(), c.session_token().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn caller_identities() {
    let server = sts_server();
    let root = ok(server.sts_for(&server.access_key, &server.secret_key, None).get_caller_identity().send().await, "root");
    assert_eq!(root.account(), Some("tessera-root"));
    assert_eq!(root.arn(), Some("arn:aws:iam::tessera-root:root"));
    let iam = server.iam();
    let (arn, ak, sk) = new_user(&iam, "u").await;
    let me = ok(server.sts_for(&ak, &sk, None).get_caller_identity().send().await, "user");
    assert_eq!(me.arn(), Some(arn.as_str()));
    assert!(me.user_id().is_some_and(|id| id.starts_with("AIDA")));
}

#[tokio::test(flavor = "multi_thread")]
async fn session_tokens_carry_their_users_rights_and_expire() {
    let server = sts_server();
    let root = server.client();
    ok(root.create_bucket().bucket("bkt").send().await, "bucket");
    ok(root.put_object().bucket("bkt").key("k").body(bytestream(b"v")).send().await, "put");
    let iam = server.iam();
    let (_, ak, sk) = new_user(&iam, "u").await;
    ok(iam.put_user_policy().user_name("u").policy_name("r").policy_document(allow(&["s3:GetObject"], &["*"])).send().await, "policy");
    let sts = server.sts_for(&ak, &sk, None);
    assert_s3_error(sts.get_session_token().duration_seconds(999_999).send().await, 400, "ValidationError");
    let out = ok(sts.get_session_token().duration_seconds(2).send().await, "session token");
    let (tak, tsk, token) = creds(out.credentials());
    assert!(tak.starts_with("ASIA"));
    let s3 = server.client_with_token(&tak, &tsk, &token);
    ok(s3.get_object().bucket("bkt").key("k").send().await, "the user's rights");
    assert_s3_error(s3.put_object().bucket("bkt").key("x").body(bytestream(b"x")).send().await, 403, "AccessDenied");
    // A session cannot make another session.
    assert_s3_error(server.sts_for(&tak, &tsk, Some(&token)).get_session_token().send().await, 403, "AccessDenied");
    // The token binds its own key: another secret, or no token, fails.
    assert_s3_error(
        server.client_with_token(&tak, "wrong-secret-0123456789abcdefghijklmnopq", &token).get_object().bucket("bkt").key("k").send().await,
        403,
        "SignatureDoesNotMatch",
    );
    assert_s3_error(server.client_for(&tak, &tsk).get_object().bucket("bkt").key("k").send().await, 403, "InvalidAccessKeyId");
    let mut forged = token.clone();
    forged.insert(10, 'x');
    assert_s3_error(server.client_with_token(&tak, &tsk, &forged).get_object().bucket("bkt").key("k").send().await, 400, "InvalidToken");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_s3_error(s3.get_object().bucket("bkt").key("k").send().await, 400, "ExpiredToken");
}

#[tokio::test(flavor = "multi_thread")]
async fn assume_role_checks_trust_and_intersects_the_session_policy() {
    let server = sts_server();
    let root = server.client();
    ok(root.create_bucket().bucket("bkt").send().await, "bucket");
    ok(root.put_object().bucket("bkt").key("k").body(bytestream(b"v")).send().await, "put");
    let iam = server.iam();
    let (alice_arn, ak, sk) = new_user(&iam, "alice").await;
    let (_, bk, bs) = new_user(&iam, "bob").await;
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"sts:AssumeRole"}}}}"#
    );
    let role = ok(
        iam.create_role().role_name("writer").assume_role_policy_document(trust).max_session_duration(3600).send().await,
        "role",
    );
    let role_arn = role.role().map(|r| r.arn().to_string()).unwrap_or_default();
    ok(iam.put_role_policy().role_name("writer").policy_name("all").policy_document(allow(&["s3:*"], &["*"])).send().await, "role policy");
    // Bob is not trusted.
    assert_s3_error(
        server.sts_for(&bk, &bs, None).assume_role().role_arn(&role_arn).role_session_name("s1").send().await,
        403,
        "AccessDenied",
    );
    let alice = server.sts_for(&ak, &sk, None);
    assert_s3_error(alice.assume_role().role_arn(&role_arn).role_session_name("s1").duration_seconds(7200).send().await, 400, "ValidationError");
    assert_s3_error(alice.assume_role().role_arn("arn:aws:iam::tessera-root:role/none").role_session_name("s1").send().await, 403, "AccessDenied");
    let session_policy = allow(&["s3:GetObject", "s3:ListBucket"], &["*"]);
    let out = ok(
        alice.assume_role().role_arn(&role_arn).role_session_name("reading").policy(session_policy).send().await,
        "assume",
    );
    let user = out.assumed_role_user().expect("assumed role user");
    assert_eq!(user.arn(), "arn:aws:sts::tessera-root:assumed-role/writer/reading");
    let (rak, rsk, token) = creds(out.credentials());
    let s3 = server.client_with_token(&rak, &rsk, &token);
    ok(s3.get_object().bucket("bkt").key("k").send().await, "role allows, session policy allows");
    assert_s3_error(s3.put_object().bucket("bkt").key("w").body(bytestream(b"w")).send().await, 403, "AccessDenied");
    let me = ok(server.sts_for(&rak, &rsk, Some(&token)).get_caller_identity().send().await, "who");
    assert_eq!(me.arn(), Some("arn:aws:sts::tessera-root:assumed-role/writer/reading"));
    // Without a session policy the role's own rights apply.
    let full = ok(alice.assume_role().role_arn(&role_arn).role_session_name("writing").send().await, "assume");
    let (fak, fsk, ftoken) = creds(full.credentials());
    let s3 = server.client_with_token(&fak, &fsk, &ftoken);
    ok(s3.put_object().bucket("bkt").key("w").body(bytestream(b"w")).send().await, "role writes");
    // The role's permissions are read at each request: removing them ends the access.
    ok(iam.delete_role_policy().role_name("writer").policy_name("all").send().await, "drop");
    assert_s3_error(s3.get_object().bucket("bkt").key("k").send().await, 403, "AccessDenied");
    // Deleting the role ends its sessions.
    ok(iam.delete_role().role_name("writer").send().await, "delete role");
    assert_s3_error(s3.get_object().bucket("bkt").key("k").send().await, 403, "InvalidAccessKeyId");
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_account_roles_need_both_sides() {
    let server = sts_server();
    let iam = server.iam();
    let alt_iam = server.iam_for(ALT.access_key, ALT.secret_key, None);
    let (alt_user_arn, ak, sk) = new_user(&alt_iam, "visitor").await;
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":{{"AWS":"{alt_user_arn}"}},"Action":"sts:AssumeRole"}}}}"#
    );
    let role = ok(iam.create_role().role_name("guest").assume_role_policy_document(trust).send().await, "role");
    let role_arn = role.role().map(|r| r.arn().to_string()).unwrap_or_default();
    let visitor = server.sts_for(&ak, &sk, None);
    // The trust policy names the visitor, but its own account has not allowed it.
    assert_s3_error(visitor.assume_role().role_arn(&role_arn).role_session_name("s1").send().await, 403, "AccessDenied");
    ok(
        alt_iam.put_user_policy().user_name("visitor").policy_name("assume").policy_document(allow(&["sts:AssumeRole"], &[&role_arn])).send().await,
        "identity side",
    );
    let out = ok(visitor.assume_role().role_arn(&role_arn).role_session_name("s1").send().await, "both sides");
    assert!(out.credentials().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_urls_never_grant_more_than_their_signer_has_at_use_time() {
    let server = sts_server();
    let root = server.client();
    ok(root.create_bucket().bucket("bkt").send().await, "bucket");
    ok(root.put_object().bucket("bkt").key("k").body(bytestream(b"hello")).send().await, "put");
    let iam = server.iam();
    let (_, ak, sk) = new_user(&iam, "p").await;
    let user = server.client_for(&ak, &sk);
    let cfg = || PresigningConfig::expires_in(Duration::from_secs(300)).expect("presign config");
    // Signed by a user with no rights: the URL is as powerless as its signer.
    let url = user.get_object().bucket("bkt").key("k").presigned(cfg()).await.expect("presign");
    let path = url.uri().strip_prefix(&server.endpoint()).unwrap_or(url.uri()).to_string();
    let (status, _) = server.anonymous("GET", &path, b"");
    assert_eq!(status, 403);
    ok(iam.put_user_policy().user_name("p").policy_name("r").policy_document(allow(&["s3:GetObject"], &["*"])).send().await, "grant");
    let (status, body) = server.anonymous("GET", &path, b"");
    assert_eq!((status, body.as_slice()), (200, &b"hello"[..]), "now the signer may");
    ok(iam.delete_user_policy().user_name("p").policy_name("r").send().await, "revoke");
    let (status, _) = server.anonymous("GET", &path, b"");
    assert_eq!(status, 403, "revoked at use time");
    // A presigned URL of temporary credentials carries the token in its query.
    ok(iam.put_user_policy().user_name("p").policy_name("r").policy_document(allow(&["s3:GetObject"], &["*"])).send().await, "grant");
    let out = ok(server.sts_for(&ak, &sk, None).get_session_token().send().await, "session");
    let (tak, tsk, token) = creds(out.credentials());
    let temp = server.client_with_token(&tak, &tsk, &token);
    let url = temp.get_object().bucket("bkt").key("k").presigned(cfg()).await.expect("presign");
    assert!(url.uri().contains("X-Amz-Security-Token="), "{}", url.uri());
    let path = url.uri().strip_prefix(&server.endpoint()).unwrap_or(url.uri()).to_string();
    let (status, body) = server.anonymous("GET", &path, b"");
    assert_eq!((status, body.as_slice()), (200, &b"hello"[..]));
}
