//! Bucket policies, ACLs, public access blocks and ownership controls,
//! and anonymous requests: a public-read policy allows anonymous GET and
//! nothing else; a public-read object can be read by anyone; a
//! public-read-write bucket takes other accounts' writes; everything else
//! is denied; `aws:SourceIp` conditions hold; settings survive a restart.

use aws_sdk_s3::types::{
    AccessControlPolicy, BucketCannedAcl, Grant, Grantee, ObjectCannedAcl, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, Owner, Permission, PublicAccessBlockConfiguration, Type,
};
use tessera_tests::*;

fn public_read_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"PublicRead","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{bucket}/*"}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_read_policy_allows_anonymous_get_and_nothing_else() {
    let server = Server::start();
    let root = server.client();
    ok(root.create_bucket().bucket("pub").send().await, "create");
    ok(root.put_object().bucket("pub").key("k").body(bytestream(b"public")).send().await, "put");
    let (status, _) = server.anonymous("GET", "/pub/k", b"");
    assert_eq!(status, 403, "private until the policy");
    let doc = public_read_policy("pub");
    ok(root.put_bucket_policy().bucket("pub").policy(&doc).send().await, "policy");
    let got = ok(root.get_bucket_policy().bucket("pub").send().await, "get policy");
    assert_eq!(got.policy(), Some(doc.as_str()), "returned byte for byte");
    let (status, body) = server.anonymous("GET", "/pub/k", b"");
    assert_eq!((status, body.as_slice()), (200, &b"public"[..]));
    assert_eq!(server.anonymous("HEAD", "/pub/k", b"").0, 200);
    for (method, path, body) in [
        ("PUT", "/pub/new", &b"x"[..]),
        ("DELETE", "/pub/k", b""),
        ("GET", "/pub", b""),
        ("GET", "/pub?acl", b""),
        ("GET", "/pub/k?acl", b""),
        ("GET", "/pub?policy", b""),
        ("PUT", "/pub?policy", b"{}"),
        ("DELETE", "/pub", b""),
        ("GET", "/", b""),
        ("PUT", "/anon-bucket", b""),
    ] {
        let (status, text) = server.anonymous(method, path, body);
        assert_eq!(status, 403, "{method} {path}: {}", String::from_utf8_lossy(&text));
        assert!(String::from_utf8_lossy(&text).contains("<Code>AccessDenied</Code>"));
    }
    let (status, _) = server.anonymous("GET", "/nobucket/k", b"");
    assert_eq!(status, 404, "a missing bucket is NoSuchBucket for anyone");
    let status = ok(root.get_bucket_policy_status().bucket("pub").send().await, "status");
    assert_eq!(status.policy_status().and_then(|s| s.is_public()), Some(true));
    ok(root.delete_bucket_policy().bucket("pub").send().await, "delete policy");
    assert_s3_error(root.get_bucket_policy().bucket("pub").send().await, 404, "NoSuchBucketPolicy");
    assert_eq!(server.anonymous("GET", "/pub/k", b"").0, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_policies_are_validated() {
    let server = Server::start();
    let root = server.client();
    ok(root.create_bucket().bucket("bkt").send().await, "create");
    let other = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}}"#;
    let no_principal = r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/*"}}"#;
    let not_principal_allow = r#"{"Statement":{"Effect":"Allow","NotPrincipal":{"AWS":"x"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/*"}}"#;
    let iam_action = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"iam:CreateUser","Resource":"arn:aws:s3:::bkt"}}"#;
    for bad in ["", "not json", "{}", other, no_principal, not_principal_allow, iam_action] {
        assert_s3_error(root.put_bucket_policy().bucket("bkt").policy(bad).send().await, 400, "MalformedPolicy");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn source_ip_conditions_hold() {
    let server = Server::start();
    let root = server.client();
    ok(root.create_bucket().bucket("ipb").send().await, "create");
    ok(root.put_object().bucket("ipb").key("k").body(bytestream(b"v")).send().await, "put");
    let allow_from = |cidr: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::ipb/*","Condition":{{"IpAddress":{{"aws:SourceIp":"{cidr}"}}}}}}]}}"#
        )
    };
    ok(root.put_bucket_policy().bucket("ipb").policy(allow_from("127.0.0.0/8")).send().await, "loopback");
    assert_eq!(server.anonymous("GET", "/ipb/k", b"").0, 200);
    ok(root.put_bucket_policy().bucket("ipb").policy(allow_from("10.0.0.0/8")).send().await, "elsewhere");
    assert_eq!(server.anonymous("GET", "/ipb/k", b"").0, 403);
    // A deny unless from a network binds the owner as well.
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::ipb","arn:aws:s3:::ipb/*"],"Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#;
    ok(root.put_bucket_policy().bucket("ipb").policy(deny).send().await, "deny");
    assert_s3_error(root.get_object().bucket("ipb").key("k").send().await, 403, "AccessDenied");
    ok(root.delete_bucket_policy().bucket("ipb").send().await, "the owner's root can always remove it");
    ok(root.get_object().bucket("ipb").key("k").send().await, "reads again");
}

#[tokio::test(flavor = "multi_thread")]
async fn acls_are_enforced() {
    let server = Server::start_with(accounts_opts());
    let root = server.client();
    let alt = server.client_for(ALT.access_key, ALT.secret_key);
    ok(root.create_bucket().bucket("acl").send().await, "create");
    ok(root.put_object().bucket("acl").key("public").body(bytestream(b"p")).acl(ObjectCannedAcl::PublicRead).send().await, "public");
    ok(root.put_object().bucket("acl").key("private").body(bytestream(b"q")).send().await, "private");
    // A public-read object is anyone's to read, in a private bucket.
    let (status, body) = server.anonymous("GET", "/acl/public", b"");
    assert_eq!((status, body.as_slice()), (200, &b"p"[..]));
    ok(alt.get_object().bucket("acl").key("public").send().await, "another account reads it");
    assert_eq!(server.anonymous("GET", "/acl/private", b"").0, 403);
    assert_s3_error(alt.get_object().bucket("acl").key("private").send().await, 403, "AccessDenied");
    assert_s3_error(alt.list_objects_v2().bucket("acl").send().await, 403, "AccessDenied");
    assert_s3_error(alt.put_object().bucket("acl").key("x").body(bytestream(b"x")).send().await, 403, "AccessDenied");
    assert_eq!(server.anonymous("GET", "/acl", b"").0, 403);
    // A public-read-write bucket takes writes from other accounts (and anonymous ones).
    ok(root.put_bucket_acl().bucket("acl").acl(BucketCannedAcl::PublicReadWrite).send().await, "bucket acl");
    ok(alt.list_objects_v2().bucket("acl").send().await, "listing is public");
    ok(alt.put_object().bucket("acl").key("from-alt").body(bytestream(b"a")).send().await, "alt writes");
    assert_eq!(server.anonymous("PUT", "/acl/from-anon", b"z").0, 200);
    // The writer owns its object: the bucket owner cannot read it unless granted...
    let owner = ok(alt.get_object_acl().bucket("acl").key("from-alt").send().await, "alt reads its ACL");
    assert_eq!(owner.owner().and_then(|o| o.id()), Some(ALT.id));
    assert_s3_error(root.get_object().bucket("acl").key("from-alt").send().await, 403, "AccessDenied");
    // ...until the writer grants it; the bucket owner may always delete it.
    ok(
        alt.put_object_acl().bucket("acl").key("from-alt").acl(ObjectCannedAcl::BucketOwnerRead).send().await,
        "grant the bucket owner",
    );
    ok(root.get_object().bucket("acl").key("from-alt").send().await, "bucket owner reads");
    ok(root.delete_object().bucket("acl").key("from-alt").send().await, "bucket owner deletes");
    // Private objects in a public bucket stay private.
    assert_s3_error(alt.get_object().bucket("acl").key("private").send().await, 403, "AccessDenied");
    // authenticated-read: any account, not anonymous.
    ok(root.put_object_acl().bucket("acl").key("private").acl(ObjectCannedAcl::AuthenticatedRead).send().await, "auth read");
    ok(alt.get_object().bucket("acl").key("private").send().await, "authenticated");
    assert_eq!(server.anonymous("GET", "/acl/private", b"").0, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn acls_round_trip_and_bad_grants_are_refused() {
    let server = Server::start_with(accounts_opts());
    let root = server.client();
    ok(root.create_bucket().bucket("grants").acl(BucketCannedAcl::PublicRead).send().await, "create with an ACL");
    let acl = ok(root.get_bucket_acl().bucket("grants").send().await, "get");
    assert_eq!(acl.grants().len(), 2);
    assert!(acl.grants().iter().any(|g| g.grantee().and_then(|e| e.uri()) == Some("http://acs.amazonaws.com/groups/global/AllUsers")
        && g.permission() == Some(&Permission::Read)));
    let owner = || Owner::builder().id("tessera-root").build();
    let grant = |id: &str, p: Permission| {
        Grant::builder().grantee(Grantee::builder().r#type(Type::CanonicalUser).id(id).build().expect("grantee")).permission(p).build()
    };
    let policy = AccessControlPolicy::builder()
        .owner(owner())
        .grants(grant("tessera-root", Permission::FullControl))
        .grants(grant(ALT.id, Permission::Write))
        .build();
    ok(root.put_bucket_acl().bucket("grants").access_control_policy(policy).send().await, "xml ACL");
    let acl = ok(root.get_bucket_acl().bucket("grants").send().await, "get");
    let alt = acl.grants().iter().find(|g| g.grantee().and_then(|e| e.id()) == Some(ALT.id)).expect("alt grant");
    assert_eq!(alt.grantee().and_then(|e| e.display_name()), Some("Alt Account"), "display names are recorded");
    ok(server.client_for(ALT.access_key, ALT.secret_key).put_object().bucket("grants").key("w").body(bytestream(b"w")).send().await, "WRITE grant");
    let unknown = AccessControlPolicy::builder().owner(owner()).grants(grant("nobody", Permission::Read)).build();
    assert_s3_error(root.put_bucket_acl().bucket("grants").access_control_policy(unknown).send().await, 400, "InvalidArgument");
    let email = Grant::builder()
        .grantee(Grantee::builder().r#type(Type::AmazonCustomerByEmail).email_address("a@example.com").build().expect("grantee"))
        .permission(Permission::Read)
        .build();
    let by_email = AccessControlPolicy::builder().owner(owner()).grants(email).build();
    assert_s3_error(root.put_bucket_acl().bucket("grants").access_control_policy(by_email).send().await, 400, "UnresolvableGrantByEmailAddress");
    assert_s3_error(
        root.put_bucket_acl().bucket("grants").grant_read(format!("id=\"{}\"", ALT.id)).acl(BucketCannedAcl::Private).send().await,
        400,
        "InvalidRequest",
    );
    ok(root.put_bucket_acl().bucket("grants").grant_read(format!("id=\"{}\"", ALT.id)).send().await, "grant header");
    let acl = ok(root.get_bucket_acl().bucket("grants").send().await, "get");
    assert_eq!(acl.grants().len(), 1, "a grant header replaces the ACL: {:?}", acl.grants());
    // Object ACLs are per version.
    ok(root.create_bucket().bucket("ver").send().await, "create");
    ok(
        root.put_bucket_versioning()
            .bucket("ver")
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await,
        "versioning",
    );
    let v1 = ok(root.put_object().bucket("ver").key("k").body(bytestream(b"1")).acl(ObjectCannedAcl::PublicRead).send().await, "v1");
    let v1 = v1.version_id().unwrap_or_default().to_string();
    ok(root.put_object().bucket("ver").key("k").body(bytestream(b"2")).send().await, "v2");
    let old = ok(root.get_object_acl().bucket("ver").key("k").version_id(&v1).send().await, "old acl");
    assert_eq!(old.grants().len(), 2);
    let cur = ok(root.get_object_acl().bucket("ver").key("k").send().await, "current acl");
    assert_eq!(cur.grants().len(), 1);
    assert_eq!(server.anonymous("GET", &format!("/ver/k?versionId={v1}"), b"").0, 200);
    assert_eq!(server.anonymous("GET", "/ver/k", b"").0, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn ownership_controls_and_public_access_blocks() {
    let server = Server::start_with(accounts_opts());
    let root = server.client();
    ok(root.create_bucket().bucket("own").object_ownership(ObjectOwnership::BucketOwnerEnforced).send().await, "create");
    let got = ok(root.get_bucket_ownership_controls().bucket("own").send().await, "get");
    let rule = got.ownership_controls().and_then(|c| c.rules().first()).map(|r| r.object_ownership().clone());
    assert_eq!(rule, Some(ObjectOwnership::BucketOwnerEnforced));
    assert_s3_error(
        root.put_object().bucket("own").key("k").body(bytestream(b"x")).acl(ObjectCannedAcl::PublicRead).send().await,
        400,
        "AccessControlListNotSupported",
    );
    ok(
        root.put_object().bucket("own").key("k").body(bytestream(b"x")).acl(ObjectCannedAcl::BucketOwnerFullControl).send().await,
        "bucket-owner-full-control passes",
    );
    assert_s3_error(root.put_bucket_acl().bucket("own").acl(BucketCannedAcl::PublicRead).send().await, 400, "AccessControlListNotSupported");
    ok(root.delete_bucket_ownership_controls().bucket("own").send().await, "delete");
    assert_s3_error(root.get_bucket_ownership_controls().bucket("own").send().await, 404, "OwnershipControlsNotFoundError");
    ok(root.put_bucket_acl().bucket("own").acl(BucketCannedAcl::PublicRead).send().await, "ACLs enabled again");
    let enforced = OwnershipControls::builder()
        .rules(OwnershipControlsRule::builder().object_ownership(ObjectOwnership::BucketOwnerEnforced).build().expect("rule"))
        .build()
        .expect("controls");
    assert_s3_error(
        root.put_bucket_ownership_controls().bucket("own").ownership_controls(enforced).send().await,
        400,
        "InvalidBucketAclWithObjectOwnership",
    );
    // Public access block.
    ok(root.create_bucket().bucket("pab").send().await, "create");
    assert_s3_error(root.get_public_access_block().bucket("pab").send().await, 404, "NoSuchPublicAccessBlockConfiguration");
    let conf = |acls: bool, ignore: bool, policy: bool, restrict: bool| {
        PublicAccessBlockConfiguration::builder()
            .block_public_acls(acls)
            .ignore_public_acls(ignore)
            .block_public_policy(policy)
            .restrict_public_buckets(restrict)
            .build()
    };
    ok(root.put_object().bucket("pab").key("k").body(bytestream(b"x")).acl(ObjectCannedAcl::PublicRead).send().await, "public object");
    ok(root.put_public_access_block().bucket("pab").public_access_block_configuration(conf(true, false, true, false)).send().await, "block");
    assert_s3_error(root.put_object().bucket("pab").key("k2").body(bytestream(b"x")).acl(ObjectCannedAcl::PublicRead).send().await, 403, "AccessDenied");
    assert_s3_error(root.put_bucket_acl().bucket("pab").acl(BucketCannedAcl::PublicRead).send().await, 403, "AccessDenied");
    assert_s3_error(root.put_bucket_policy().bucket("pab").policy(public_read_policy("pab")).send().await, 403, "AccessDenied");
    assert_eq!(server.anonymous("GET", "/pab/k", b"").0, 200, "existing public ACLs still count");
    ok(root.put_public_access_block().bucket("pab").public_access_block_configuration(conf(false, true, false, false)).send().await, "ignore");
    assert_eq!(server.anonymous("GET", "/pab/k", b"").0, 403, "IgnorePublicAcls");
    ok(root.put_bucket_policy().bucket("pab").policy(public_read_policy("pab")).send().await, "public policy");
    assert_eq!(server.anonymous("GET", "/pab/k", b"").0, 200);
    ok(root.put_public_access_block().bucket("pab").public_access_block_configuration(conf(false, true, false, true)).send().await, "restrict");
    assert_eq!(server.anonymous("GET", "/pab/k", b"").0, 403, "RestrictPublicBuckets");
    ok(root.get_object().bucket("pab").key("k").send().await, "the owner still reads");
    let got = ok(root.get_public_access_block().bucket("pab").send().await, "get");
    assert_eq!(got.public_access_block_configuration().and_then(|c| c.restrict_public_buckets()), Some(true));
    ok(root.delete_public_access_block().bucket("pab").send().await, "delete");
    assert_eq!(server.anonymous("GET", "/pab/k", b"").0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_account_grants_by_bucket_policy() {
    let server = Server::start_with(accounts_opts());
    let root = server.client();
    let alt = server.client_for(ALT.access_key, ALT.secret_key);
    let third = server.client_for(THIRD.access_key, THIRD.secret_key);
    ok(root.create_bucket().bucket("xacct").send().await, "create");
    ok(root.put_object().bucket("xacct").key("k").body(bytestream(b"v")).send().await, "put");
    let doc = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{}:root"}},"Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::xacct","arn:aws:s3:::xacct/*"]}}]}}"#,
        ALT.id
    );
    ok(root.put_bucket_policy().bucket("xacct").policy(doc).send().await, "policy");
    ok(alt.get_object().bucket("xacct").key("k").send().await, "granted account");
    ok(alt.list_objects_v2().bucket("xacct").send().await, "granted account lists");
    assert_s3_error(third.get_object().bucket("xacct").key("k").send().await, 403, "AccessDenied");
    assert_s3_error(alt.delete_object().bucket("xacct").key("k").send().await, 403, "AccessDenied");
    // The granted account's IAM users need their own account's allow too.
    let alt_iam = server.iam_for(ALT.access_key, ALT.secret_key, None);
    let (_, ak, sk) = new_user(&alt_iam, "worker").await;
    let worker = server.client_for(&ak, &sk);
    assert_s3_error(worker.get_object().bucket("xacct").key("k").send().await, 403, "AccessDenied");
    ok(alt_iam.put_user_policy().user_name("worker").policy_name("p").policy_document(allow(&["s3:GetObject"], &["*"])).send().await, "identity");
    ok(worker.get_object().bucket("xacct").key("k").send().await, "both sides allow");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_settings_survive_a_restart() {
    let mut server = Server::start_with(accounts_opts());
    let root = server.client();
    ok(root.create_bucket().bucket("keep").send().await, "create");
    ok(root.put_object().bucket("keep").key("k").body(bytestream(b"v")).acl(ObjectCannedAcl::PublicRead).send().await, "put");
    ok(root.put_bucket_acl().bucket("keep").acl(BucketCannedAcl::PublicRead).send().await, "acl");
    ok(root.put_bucket_policy().bucket("keep").policy(public_read_policy("keep")).send().await, "policy");
    let pab = PublicAccessBlockConfiguration::builder().block_public_acls(true).build();
    ok(root.put_public_access_block().bucket("keep").public_access_block_configuration(pab).send().await, "pab");
    let controls = OwnershipControls::builder()
        .rules(OwnershipControlsRule::builder().object_ownership(ObjectOwnership::BucketOwnerPreferred).build().expect("rule"))
        .build()
        .expect("controls");
    ok(root.put_bucket_ownership_controls().bucket("keep").ownership_controls(controls).send().await, "ownership");
    server.restart();
    let root = server.client();
    assert_eq!(ok(root.get_bucket_acl().bucket("keep").send().await, "acl").grants().len(), 2);
    assert_eq!(ok(root.get_bucket_policy().bucket("keep").send().await, "policy").policy(), Some(public_read_policy("keep").as_str()));
    assert!(ok(root.get_public_access_block().bucket("keep").send().await, "pab").public_access_block_configuration().is_some());
    assert!(ok(root.get_bucket_ownership_controls().bucket("keep").send().await, "ownership").ownership_controls().is_some());
    assert_eq!(ok(root.get_object_acl().bucket("keep").key("k").send().await, "object acl").grants().len(), 2);
    assert_eq!(server.anonymous("GET", "/keep/k", b"").0, 200);
}

/// A key that does not exist: 404 NoSuchKey to who may list the bucket
/// under its name (`s3:ListBucket`, by ACL or policy, its `s3:prefix`
/// condition seeing the key), whether or not anything would let them read
/// it; 403 to everyone else, and to whom a policy explicitly denies the read.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_key_is_404_to_who_may_list_the_bucket() {
    let server = Server::start_with(accounts_opts());
    let root = server.client();
    let alt = server.client_for(ALT.access_key, ALT.secret_key);
    // Anonymous, public-read bucket (READ = ListBucket): 404 for GET and HEAD,
    // also for a key that was deleted.
    ok(root.create_bucket().bucket("pubr").acl(BucketCannedAcl::PublicRead).send().await, "create");
    ok(root.put_object().bucket("pubr").key("gone").body(bytestream(b"x")).acl(ObjectCannedAcl::PublicRead).send().await, "put");
    assert_eq!(server.anonymous("GET", "/pubr/gone", b"").0, 200);
    ok(root.delete_object().bucket("pubr").key("gone").send().await, "delete");
    let (status, body) = server.anonymous("GET", "/pubr/gone", b"");
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("<Code>NoSuchKey</Code>"));
    assert_eq!(server.anonymous("HEAD", "/pubr/never", b"").0, 404);
    // A private bucket tells an anonymous reader nothing.
    ok(root.create_bucket().bucket("privb").send().await, "create private");
    assert_eq!(server.anonymous("GET", "/privb/never", b"").0, 403);
    assert_s3_error(alt.get_object().bucket("privb").key("never").send().await, 403, "AccessDenied");
    // ListBucket by policy, only under public/: another account learns of
    // missing keys there and nowhere else.
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::privb","Condition":{"StringLike":{"s3:prefix":"public/*"}}}]}"#;
    ok(root.put_bucket_policy().bucket("privb").policy(doc).send().await, "policy");
    let head = alt.head_object().bucket("privb").key("public/object").send().await;
    assert_eq!(head.err().and_then(|e| e.raw_response().map(|r| r.status().as_u16())), Some(404));
    let head = alt.head_object().bucket("privb").key("private/object").send().await;
    assert_eq!(head.err().and_then(|e| e.raw_response().map(|r| r.status().as_u16())), Some(403));
    assert_s3_error(alt.get_object().bucket("privb").key("public/object").send().await, 404, "NoSuchKey");
    // An explicit deny of the read wins over the listing.
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::privb"},{"Effect":"Deny","Principal":{"AWS":"*"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::privb/secret/*"}]}"#;
    ok(root.put_bucket_policy().bucket("privb").policy(deny).send().await, "deny policy");
    assert_s3_error(alt.get_object().bucket("privb").key("open/x").send().await, 404, "NoSuchKey");
    assert_s3_error(alt.get_object().bucket("privb").key("secret/x").send().await, 403, "AccessDenied");
}

/// The ACL a write of a new object asks for is granted with s3:PutObject
/// (a bucket ACL's WRITE, or a policy that grants only s3:PutObject on
/// condition of the ACL headers, as AWS's cross-account examples do);
/// s3:PutObjectAcl counts only when explicitly denied.
#[tokio::test(flavor = "multi_thread")]
async fn writes_with_acl_headers_need_put_object_only() {
    let server = Server::start_with(accounts_opts());
    let root = server.client();
    let alt = server.client_for(ALT.access_key, ALT.secret_key);
    // Anonymous and cross-account writers of a public-read-write bucket.
    ok(root.create_bucket().bucket("prw").acl(BucketCannedAcl::PublicReadWrite).send().await, "create");
    let req = server.raw_request("PUT", "/prw/anon").header("x-amz-acl", "public-read").body("a");
    assert_eq!(server.send(&req).status, 200);
    assert_eq!(server.anonymous("GET", "/prw/anon", b""), (200, b"a".to_vec()), "public-read as asked");
    ok(
        alt.put_object().bucket("prw").key("alt").body(bytestream(b"b")).acl(ObjectCannedAcl::BucketOwnerRead).send().await,
        "cross-account write with a canned ACL",
    );
    ok(root.get_object().bucket("prw").key("alt").send().await, "bucket-owner-read granted the owner");
    // A policy granting s3:PutObject only when the bucket owner gets full control.
    ok(root.create_bucket().bucket("bofc").send().await, "create");
    let owner = ok(root.get_bucket_acl().bucket("bofc").send().await, "bucket acl");
    let owner_id = owner.owner().and_then(|o| o.id()).unwrap_or_default().to_string();
    let grant = format!("id={owner_id}");
    let doc = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"*"}},"Action":"s3:PutObject","Resource":"arn:aws:s3:::bofc/*","Condition":{{"StringEquals":{{"s3:x-amz-grant-full-control":"{grant}"}}}}}}]}}"#
    );
    ok(root.put_bucket_policy().bucket("bofc").policy(doc).send().await, "policy");
    assert_s3_error(alt.put_object().bucket("bofc").key("k").body(bytestream(b"x")).send().await, 403, "AccessDenied");
    ok(alt.put_object().bucket("bofc").key("k").body(bytestream(b"x")).grant_full_control(&grant).send().await, "conditioned write");
    let acl = ok(root.get_object_acl().bucket("bofc").key("k").send().await, "owner reads the ACL");
    assert_eq!(acl.grants().first().and_then(|g| g.grantee()).and_then(|g| g.id()), Some(owner_id.as_str()));
    // An explicit deny of s3:PutObjectAcl still refuses writes with ACL headers.
    ok(root.create_bucket().bucket("noacl").acl(BucketCannedAcl::PublicReadWrite).send().await, "create");
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:PutObjectAcl","Resource":"arn:aws:s3:::noacl/*"}]}"#;
    ok(root.put_bucket_policy().bucket("noacl").policy(deny).send().await, "deny policy");
    let req = server.raw_request("PUT", "/noacl/anon").header("x-amz-acl", "public-read").body("a");
    assert_eq!(server.send(&req).status, 403);
    assert_eq!(server.anonymous("PUT", "/noacl/plain", b"a").0, 200, "no ACL header, no PutObjectAcl");
}

/// `x-amz-expected-bucket-owner` and, for a copy's source,
/// `x-amz-source-expected-bucket-owner` (s3-tests'
/// `test_expected_bucket_owner`): the right owner passes, another one is
/// 403 AccessDenied for the owner's own requests and for anonymous ones on
/// a public bucket alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_expecting_another_bucket_owner_is_refused() {
    let server = Server::start();
    let root = server.client();
    ok(root.create_bucket().bucket("own").send().await, "create");
    ok(root.put_object().bucket("own").key("k").body(bytestream(b"mine")).send().await, "put");
    let owner = ok(root.list_buckets().send().await, "list buckets").owner().and_then(|o| o.id()).unwrap().to_string();
    let other = format!("{owner}foo");

    // The owner's own requests: the right owner passes, another fails.
    ok(root.list_objects_v2().bucket("own").expected_bucket_owner(&owner).send().await, "list, right owner");
    ok(root.get_object().bucket("own").key("k").expected_bucket_owner(&owner).send().await, "get, right owner");
    let f = sdk_failure(root.list_objects_v2().bucket("own").expected_bucket_owner(&other).send().await);
    assert_eq!((f.status, f.code.as_deref()), (Some(403), Some("AccessDenied")), "{f:#?}");
    let f = sdk_failure(root.put_object().bucket("own").key("n").body(bytestream(b"x")).expected_bucket_owner(&other).send().await);
    assert_eq!((f.status, f.code.as_deref()), (Some(403), Some("AccessDenied")), "{f:#?}");
    let f = sdk_failure(root.get_bucket_versioning().bucket("own").expected_bucket_owner(&other).send().await);
    assert_eq!((f.status, f.code.as_deref()), (Some(403), Some("AccessDenied")), "{f:#?}");
    let gone = sdk_failure(root.head_object().bucket("own").key("n").send().await);
    assert_eq!(gone.status, Some(404), "the refused PUT stored nothing");

    // A copy checks its source bucket's owner against its own header.
    ok(
        root.copy_object().bucket("own").key("c1").copy_source("own/k").expected_source_bucket_owner(&owner).send().await,
        "copy, right source owner",
    );
    let f = sdk_failure(root.copy_object().bucket("own").key("c2").copy_source("own/k").expected_source_bucket_owner(&other).send().await);
    assert_eq!((f.status, f.code.as_deref()), (Some(403), Some("AccessDenied")), "{f:#?}");

    // Anonymous requests on a bucket anyone may read and write.
    ok(
        root.put_bucket_acl().bucket("own").acl(aws_sdk_s3::types::BucketCannedAcl::PublicReadWrite).send().await,
        "public-read-write",
    );
    let anon = |method: &str, path: &str, expected: Option<&str>| {
        let mut req = server.raw_request(method, path);
        if method == "PUT" {
            req = req.body(b"anon".to_vec());
        }
        if let Some(e) = expected {
            req = req.header("x-amz-expected-bucket-owner", e);
        }
        server.send(&req).status
    };
    assert_eq!(anon("GET", "/own", None), 200);
    assert_eq!(anon("GET", "/own", Some(&owner)), 200);
    assert_eq!(anon("GET", "/own", Some(&other)), 403);
    assert_eq!(anon("PUT", "/own/anon", Some(&other)), 403);
    assert_eq!(anon("PUT", "/own/anon", Some(&owner)), 200);
}
