//! IAM: users, access keys, groups, managed and inline policies, driven by
//! aws-sdk-iam; what they allow checked with aws-sdk-s3. A user limited to
//! a prefix cannot read, list or copy outside it; explicit deny wins; a
//! user cannot give itself more rights or make keys for others without
//! permission; keys stop working the moment they are deactivated or
//! deleted; everything survives a restart and no secret is on disk in
//! clear.

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tessera_tests::*;

fn prefix_policy() -> String {
    r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::data/home/${aws:username}/*"},
        {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::data",
         "Condition":{"StringLike":{"s3:prefix":["home/${aws:username}/*"]}}}]}"#
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_limited_to_a_prefix_cannot_read_list_or_copy_outside_it() {
    let server = Server::start();
    let root = server.client();
    let iam = server.iam();
    ok(root.create_bucket().bucket("data").send().await, "create bucket");
    for k in ["home/alice/a", "home/bob/b", "shared/c"] {
        ok(root.put_object().bucket("data").key(k).body(bytestream(k.as_bytes())).send().await, "put");
    }
    let (_, ak, sk) = new_user(&iam, "alice").await;
    let alice = server.client_for(&ak, &sk);
    // No policy: nothing is allowed, not even on the own prefix.
    assert_s3_error(alice.get_object().bucket("data").key("home/alice/a").send().await, 403, "AccessDenied");
    ok(
        iam.put_user_policy().user_name("alice").policy_name("home").policy_document(prefix_policy()).send().await,
        "put policy",
    );
    let got = ok(alice.get_object().bucket("data").key("home/alice/a").send().await, "own prefix");
    assert_eq!(read_body(got).await, b"home/alice/a");
    assert_s3_error(alice.get_object().bucket("data").key("home/bob/b").send().await, 403, "AccessDenied");
    assert_s3_error(alice.get_object().bucket("data").key("shared/c").send().await, 403, "AccessDenied");
    // HEAD of a missing key outside: 403 (never a 404 that tells it is
    // missing); inside, where she may list, 404.
    assert_status(alice.head_object().bucket("data").key("home/bob/none").send().await, 403);
    assert_status(alice.head_object().bucket("data").key("home/alice/none").send().await, 404);
    let listed = ok(alice.list_objects_v2().bucket("data").prefix("home/alice/").send().await, "list own");
    assert_eq!(listed.contents().len(), 1);
    assert_s3_error(alice.list_objects_v2().bucket("data").send().await, 403, "AccessDenied");
    assert_s3_error(alice.list_objects_v2().bucket("data").prefix("home/bob/").send().await, 403, "AccessDenied");
    // CopyObject checks the source: a copy from outside into the prefix is refused.
    assert_s3_error(
        alice.copy_object().bucket("data").key("home/alice/stolen").copy_source("data/home/bob/b").send().await,
        403,
        "AccessDenied",
    );
    ok(
        alice.copy_object().bucket("data").key("home/alice/copy").copy_source("data/home/alice/a").send().await,
        "copy inside",
    );
    // And so does UploadPartCopy.
    let up = ok(alice.create_multipart_upload().bucket("data").key("home/alice/mp").send().await, "create upload");
    let id = up.upload_id().unwrap_or_default().to_string();
    assert_s3_error(
        alice
            .upload_part_copy()
            .bucket("data")
            .key("home/alice/mp")
            .upload_id(&id)
            .part_number(1)
            .copy_source("data/shared/c")
            .send()
            .await,
        403,
        "AccessDenied",
    );
    let part = ok(
        alice
            .upload_part_copy()
            .bucket("data")
            .key("home/alice/mp")
            .upload_id(&id)
            .part_number(1)
            .copy_source("data/home/alice/a")
            .send()
            .await,
        "part copy inside",
    );
    let etag = part.copy_part_result().and_then(|r| r.e_tag()).unwrap_or_default().to_string();
    let done = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
        .build();
    ok(
        alice.complete_multipart_upload().bucket("data").key("home/alice/mp").upload_id(&id).multipart_upload(done).send().await,
        "complete",
    );
    // Nothing outside the prefix can be written either.
    assert_s3_error(
        alice.put_object().bucket("data").key("shared/x").body(bytestream(b"x")).send().await,
        403,
        "AccessDenied",
    );
    assert_s3_error(alice.create_bucket().bucket("alices").send().await, 403, "AccessDenied");
}

#[tokio::test(flavor = "multi_thread")]
async fn explicit_deny_beats_allow_across_policies_and_groups() {
    let server = Server::start();
    let root = server.client();
    let iam = server.iam();
    ok(root.create_bucket().bucket("bkt").send().await, "create");
    ok(root.put_object().bucket("bkt").key("k").body(bytestream(b"v")).send().await, "put");
    let (_, ak, sk) = new_user(&iam, "carol").await;
    let carol = server.client_for(&ak, &sk);
    ok(iam.create_group().group_name("readers").send().await, "group");
    ok(iam.add_user_to_group().group_name("readers").user_name("carol").send().await, "join");
    ok(
        iam.attach_group_policy()
            .group_name("readers")
            .policy_arn("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
            .send()
            .await,
        "attach managed",
    );
    ok(carol.get_object().bucket("bkt").key("k").send().await, "allowed through the group");
    assert_s3_error(carol.put_object().bucket("bkt").key("k2").body(bytestream(b"x")).send().await, 403, "AccessDenied");
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/k"}]}"#;
    let p = ok(iam.create_policy().policy_name("no-k").policy_document(deny).send().await, "create policy");
    let arn = p.policy().and_then(|p| p.arn()).unwrap_or_default().to_string();
    ok(iam.attach_user_policy().user_name("carol").policy_arn(&arn).send().await, "attach deny");
    assert_s3_error(carol.get_object().bucket("bkt").key("k").send().await, 403, "AccessDenied");
    // A new default version without the deny restores access at once.
    let allow_all = allow(&["s3:GetObject"], &["*"]);
    ok(
        iam.create_policy_version().policy_arn(&arn).policy_document(&allow_all).set_as_default(true).send().await,
        "new version",
    );
    ok(carol.get_object().bucket("bkt").key("k").send().await, "deny version replaced");
    let versions = ok(iam.list_policy_versions().policy_arn(&arn).send().await, "versions");
    assert_eq!(versions.versions().len(), 2);
    assert_s3_error(iam.delete_policy_version().policy_arn(&arn).version_id("v2").send().await, 409, "DeleteConflict");
    assert_s3_error(iam.delete_policy().policy_arn(&arn).send().await, 409, "DeleteConflict");
    // A bucket policy's explicit deny beats the identity allow as well.
    let bucket_deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/*"}]}"#;
    ok(root.put_bucket_policy().bucket("bkt").policy(bucket_deny).send().await, "bucket deny");
    assert_s3_error(carol.get_object().bucket("bkt").key("k").send().await, 403, "AccessDenied");
    // It binds the account's root too, which can still remove the policy.
    assert_s3_error(root.get_object().bucket("bkt").key("k").send().await, 403, "AccessDenied");
    ok(root.delete_bucket_policy().bucket("bkt").send().await, "root removes the policy");
    ok(root.get_object().bucket("bkt").key("k").send().await, "root reads again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_cannot_raise_its_own_rights_or_make_keys_for_others() {
    let server = Server::start();
    let iam = server.iam();
    let (_, ak, sk) = new_user(&iam, "mallory").await;
    new_user(&iam, "victim").await;
    let m = server.iam_for(&ak, &sk, None);
    // No permission: nothing.
    assert_s3_error(
        m.attach_user_policy().user_name("mallory").policy_arn("arn:aws:iam::aws:policy/AdministratorAccess").send().await,
        403,
        "AccessDenied",
    );
    assert_s3_error(m.create_access_key().user_name("victim").send().await, 403, "AccessDenied");
    assert_s3_error(m.list_users().send().await, 403, "AccessDenied");
    // Even with iam:* a user cannot change the policies that apply to itself
    // (nor leave a group, nor edit a group it belongs to)...
    ok(
        iam.put_user_policy().user_name("mallory").policy_name("iam-admin").policy_document(allow(&["iam:*"], &["*"])).send().await,
        "root grants iam:*",
    );
    assert_s3_error(
        m.attach_user_policy().user_name("mallory").policy_arn("arn:aws:iam::aws:policy/AdministratorAccess").send().await,
        403,
        "AccessDenied",
    );
    assert_s3_error(
        m.put_user_policy().user_name("mallory").policy_name("more").policy_document(allow(&["*"], &["*"])).send().await,
        403,
        "AccessDenied",
    );
    assert_s3_error(m.delete_user_policy().user_name("mallory").policy_name("iam-admin").send().await, 403, "AccessDenied");
    ok(iam.create_group().group_name("g").send().await, "group");
    ok(iam.add_user_to_group().group_name("g").user_name("mallory").send().await, "join");
    assert_s3_error(
        m.put_group_policy().group_name("g").policy_name("p").policy_document(allow(&["*"], &["*"])).send().await,
        403,
        "AccessDenied",
    );
    assert_s3_error(m.remove_user_from_group().group_name("g").user_name("mallory").send().await, 403, "AccessDenied");
    // ...while acting on others is a matter of permission.
    let k = ok(m.create_access_key().user_name("victim").send().await, "with permission");
    assert!(k.access_key().is_some());
    ok(m.list_users().send().await, "list with permission");
    // A deny for a user ARN holds against iam:*.
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iam:CreateAccessKey","Resource":"arn:aws:iam::*:user/victim"}]}"#;
    ok(iam.put_user_policy().user_name("mallory").policy_name("deny").policy_document(deny).send().await, "deny");
    assert_s3_error(m.create_access_key().user_name("victim").send().await, 403, "AccessDenied");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_stop_working_at_once_when_deactivated_or_deleted() {
    let server = Server::start();
    let root = server.client();
    let iam = server.iam();
    ok(root.create_bucket().bucket("bkt").send().await, "create");
    let (_, ak, sk) = new_user(&iam, "dave").await;
    ok(
        iam.attach_user_policy().user_name("dave").policy_arn("arn:aws:iam::aws:policy/AmazonS3FullAccess").send().await,
        "attach",
    );
    let dave = server.client_for(&ak, &sk);
    ok(dave.list_objects_v2().bucket("bkt").send().await, "works");
    ok(
        iam.update_access_key().user_name("dave").access_key_id(&ak).status(aws_sdk_iam::types::StatusType::Inactive).send().await,
        "deactivate",
    );
    assert_s3_error(dave.list_objects_v2().bucket("bkt").send().await, 403, "InvalidAccessKeyId");
    ok(
        iam.update_access_key().user_name("dave").access_key_id(&ak).status(aws_sdk_iam::types::StatusType::Active).send().await,
        "reactivate",
    );
    ok(dave.list_objects_v2().bucket("bkt").send().await, "works again");
    ok(iam.delete_access_key().user_name("dave").access_key_id(&ak).send().await, "delete");
    assert_s3_error(dave.list_objects_v2().bucket("bkt").send().await, 403, "InvalidAccessKeyId");
    assert_s3_error(iam.delete_access_key().user_name("dave").access_key_id(&ak).send().await, 404, "NoSuchEntity");
    // Two keys at most per user; a user with keys or policies cannot be deleted.
    ok(iam.create_access_key().user_name("dave").send().await, "key 1");
    ok(iam.create_access_key().user_name("dave").send().await, "key 2");
    assert_s3_error(iam.create_access_key().user_name("dave").send().await, 409, "LimitExceeded");
    assert_s3_error(iam.delete_user().user_name("dave").send().await, 409, "DeleteConflict");
    // A signature by an unknown key is refused in IAM's words.
    let stranger = server.iam_for("AKIANOBODY0000000000", "nobody-secret-0123456789abcdefghijklmnop", None);
    assert_s3_error(stranger.list_users().send().await, 403, "InvalidClientTokenId");
}

#[tokio::test(flavor = "multi_thread")]
async fn entities_errors_and_listings_answer_as_iam_does() {
    let server = Server::start();
    let iam = server.iam();
    ok(iam.create_user().user_name("Erin").path("/team/").send().await, "create");
    assert_s3_error(iam.create_user().user_name("erin").send().await, 409, "EntityAlreadyExists");
    let got = ok(iam.get_user().user_name("ERIN").send().await, "names are case-insensitive");
    let user = got.user().expect("user");
    assert_eq!((user.user_name(), user.path()), ("Erin", "/team/"));
    assert!(user.arn().ends_with(":user/team/Erin"), "{}", user.arn());
    assert!(user.user_id().starts_with("AIDA"));
    assert_s3_error(iam.get_user().user_name("nobody").send().await, 404, "NoSuchEntity");
    assert_s3_error(iam.create_user().user_name("bad/name").send().await, 400, "ValidationError");
    assert_s3_error(
        iam.put_user_policy().user_name("Erin").policy_name("p").policy_document("{not json").send().await,
        400,
        "MalformedPolicyDocument",
    );
    assert_s3_error(
        iam.put_user_policy()
            .user_name("Erin")
            .policy_name("p")
            .policy_document(r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#)
            .send()
            .await,
        400,
        "MalformedPolicyDocument",
    );
    let big = allow(&["s3:GetObject"], &vec!["arn:aws:s3:::bucket-with-a-long-name/some/long/prefix/*"; 60]);
    assert_s3_error(iam.put_user_policy().user_name("Erin").policy_name("big").policy_document(big).send().await, 409, "LimitExceeded");
    let doc = allow(&["s3:GetObject"], &["arn:aws:s3:::bkt/*"]);
    ok(iam.put_user_policy().user_name("Erin").policy_name("p").policy_document(&doc).send().await, "put");
    let back = ok(iam.get_user_policy().user_name("Erin").policy_name("p").send().await, "get");
    assert_eq!(decode_url(back.policy_document()), doc, "the document comes back URL-encoded, byte for byte");
    for n in ["u3", "u1", "U2"] {
        ok(iam.create_user().user_name(n).path("/list/").send().await, "create");
    }
    let names = |out: &aws_sdk_iam::operation::list_users::ListUsersOutput| -> Vec<String> {
        out.users().iter().map(|u| u.user_name().to_string()).collect()
    };
    let page1 = ok(iam.list_users().path_prefix("/list/").max_items(2).send().await, "page 1");
    assert_eq!(names(&page1), ["u1", "U2"]);
    assert!(page1.is_truncated());
    let page2 = ok(
        iam.list_users().path_prefix("/list/").max_items(2).marker(page1.marker().unwrap_or_default()).send().await,
        "page 2",
    );
    assert_eq!(names(&page2), ["u3"]);
    assert!(!page2.is_truncated());
    ok(iam.update_user().user_name("u1").new_user_name("u9").send().await, "rename");
    assert_s3_error(iam.get_user().user_name("u1").send().await, 404, "NoSuchEntity");
    ok(iam.get_user().user_name("u9").send().await, "renamed");
    // Roles: a malformed trust policy is refused; deleting one with policies conflicts.
    assert_s3_error(
        iam.create_role().role_name("r").assume_role_policy_document(allow(&["s3:*"], &["*"])).send().await,
        400,
        "MalformedPolicyDocument",
    );
    let trust = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}}"#;
    ok(iam.create_role().role_name("r").assume_role_policy_document(trust).send().await, "role");
    ok(iam.put_role_policy().role_name("r").policy_name("p").policy_document(&doc).send().await, "role policy");
    assert_s3_error(iam.delete_role().role_name("r").send().await, 409, "DeleteConflict");
    ok(iam.delete_role_policy().role_name("r").policy_name("p").send().await, "drop policy");
    ok(iam.delete_role().role_name("r").send().await, "delete role");
}

#[tokio::test(flavor = "multi_thread")]
async fn identities_survive_a_restart_and_no_secret_is_on_disk_in_clear() {
    let mut server = Server::start();
    let iam = server.iam();
    ok(server.client().create_bucket().bucket("bkt").send().await, "create");
    let (_, ak, sk) = new_user(&iam, "frank").await;
    ok(iam.put_user_policy().user_name("frank").policy_name("list").policy_document(allow(&["s3:ListBucket"], &["*"])).send().await, "policy");
    ok(iam.create_group().group_name("g").send().await, "group");
    ok(iam.add_user_to_group().group_name("g").user_name("frank").send().await, "join");
    server.restart();
    let iam = server.iam();
    let frank = server.client_for(&ak, &sk);
    ok(frank.list_objects_v2().bucket("bkt").send().await, "key and policy survived");
    let g = ok(iam.get_group().group_name("g").send().await, "group survived");
    assert_eq!(g.users().len(), 1);
    // The secret is sealed: no file of the data dir holds it in clear.
    for dir in server.data_dirs() {
        for entry in walk(dir) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            assert!(!bytes.windows(sk.len()).any(|w| w == sk.as_bytes()), "secret in clear in {}", entry.display());
        }
    }
    // The node key is private to the server's user.
    let key = server.data_dirs()[0].join("node.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).expect("node key").permissions().mode() & 0o777, 0o600);
    // Nor is it ever logged.
    assert!(!server.stderr_since_start().contains(&sk));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
