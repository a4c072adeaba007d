//! Table-driven tests built from the examples of AWS's documentation
//! ("Bucket policy examples", "Identity-based policy examples", "Policy
//! evaluation logic", "IAM JSON policy elements: Condition operators"):
//! each case is a policy, a request and the decision AWS documents.

use tessera_policy::acl::{AclSubject, Permission};
use tessera_policy::authorize::AclCheck;
use tessera_policy::{authorize, parse, Acl, CannedAcl, Context, Decision, Kind, PrincipalFacts, Subject, SubjectKind, Target};

const ACCT_A: &str = "111111111111";
const ACCT_B: &str = "222222222222";

fn user(account: &str, name: &str) -> PrincipalFacts {
    PrincipalFacts {
        anonymous: false,
        account: account.into(),
        arn: format!("arn:aws:iam::{account}:user/{name}"),
        role_arn: None,
        is_root: false,
        aliases: Vec::new(),
    }
}

fn root(account: &str) -> PrincipalFacts {
    PrincipalFacts {
        anonymous: false,
        account: account.into(),
        arn: format!("arn:aws:iam::{account}:root"),
        role_arn: None,
        is_root: true,
        aliases: Vec::new(),
    }
}

fn ctx_for(p: &PrincipalFacts, extra: &[(&str, &str)]) -> Context {
    let mut c = Context::new();
    c.insert("aws:SourceIp", "192.0.2.10").insert("aws:SecureTransport", "false");
    c.insert("aws:CurrentTime", "2024-06-01T12:00:00Z").insert("aws:EpochTime", "1717243200");
    if !p.anonymous {
        if let Some(name) = p.arn.rsplit('/').next().filter(|_| !p.is_root) {
            c.insert("aws:username", name);
        }
        c.insert("aws:PrincipalArn", p.arn.clone());
        c.insert("aws:PrincipalAccount", p.account.clone());
    }
    for (k, v) in extra {
        c.insert(k, *v);
    }
    c
}

struct Case {
    name: &'static str,
    identity: Option<&'static str>,
    bucket_policy: Option<&'static str>,
    who: PrincipalFacts,
    kind: SubjectKind,
    action: &'static str,
    resource: &'static str,
    owner: &'static str,
    extra: &'static [(&'static str, &'static str)],
    want: Decision,
}

fn run(c: &Case) {
    let identity = c.identity.map(|t| parse(t, Kind::Identity).unwrap_or_else(|e| panic!("{}: {e}", c.name)));
    let bucket = c.bucket_policy.map(|t| parse(t, Kind::Resource).unwrap_or_else(|e| panic!("{}: {e}", c.name)));
    let ids: Vec<&_> = identity.iter().collect();
    let subject = Subject { kind: c.kind, facts: &c.who, identity: &ids, session: None, boundary: None };
    let target = Target {
        action: c.action,
        resource: c.resource,
        owner: c.owner,
        policy: bucket.as_ref(),
        policy_grants: true,
        acl: None,
        ignore_public_acls: false,
        restrict_public: false,
        root_backstop: false,
    };
    let got = authorize(&subject, &target, &ctx_for(&c.who, c.extra));
    assert_eq!(got, c.want, "{}", c.name);
}

const HOME_FOLDERS: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "AllowListingOfUserFolder", "Effect": "Allow", "Action": ["s3:ListBucket"],
     "Resource": ["arn:aws:s3:::amzn-s3-demo-bucket"],
     "Condition": {"StringLike": {"s3:prefix": ["home/${aws:username}/*", "home/${aws:username}"]}}},
    {"Sid": "AllowAllS3ActionsInUserFolder", "Effect": "Allow", "Action": ["s3:*"],
     "Resource": ["arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}/*"]}
  ]
}"#;

const DENY_OUTSIDE_IP: &str = r#"{
  "Version": "2012-10-17",
  "Id": "S3PolicyId1",
  "Statement": [
    {"Sid": "IPAllow", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
     "Resource": ["arn:aws:s3:::amzn-s3-demo-bucket", "arn:aws:s3:::amzn-s3-demo-bucket/*"],
     "Condition": {"NotIpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}
  ]
}"#;

const PUBLIC_READ: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
     "Resource": ["arn:aws:s3:::amzn-s3-demo-bucket/*"]}
  ]
}"#;

const REQUIRE_TLS: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "RestrictToTLSRequestsOnly", "Action": "s3:*", "Effect": "Deny", "Principal": "*",
     "Resource": ["arn:aws:s3:::amzn-s3-demo-bucket", "arn:aws:s3:::amzn-s3-demo-bucket/*"],
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
  ]
}"#;

const REFERER: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Allow only GET requests originating from www.example.com and example.com.",
     "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["s3:GetObject", "s3:GetObjectVersion"],
     "Resource": "arn:aws:s3:::amzn-s3-demo-bucket/*",
     "Condition": {"StringLike": {"aws:Referer": ["https://www.example.com/*", "https://example.com/*"]}}}
  ]
}"#;

const CROSS_ACCOUNT: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Example permissions", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
     "Action": ["s3:GetLifecycleConfiguration", "s3:ListBucket"], "Resource": ["arn:aws:s3:::amzn-s3-demo-bucket"]}
  ]
}"#;

const USER_LIST_ANY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#;

const TIME_WINDOW: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
    "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2024-01-01T00:00:00Z"},
                  "DateLessThan": {"aws:CurrentTime": "2024-12-31T23:59:59Z"}}}]
}"#;

const MAX_KEYS: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{"Sid": "statement1", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::amzn-s3-demo-bucket",
    "Condition": {"NumericLessThanEquals": {"s3:max-keys": "10"}}}]
}"#;

const REQUIRE_SSE: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::amzn-s3-demo-bucket/*"},
    {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::amzn-s3-demo-bucket/*",
     "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}
  ]
}"#;

const EXISTING_TAG: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::amzn-s3-demo-bucket/*",
    "Condition": {"StringEquals": {"s3:ExistingObjectTag/environment": "production"}}}]
}"#;

const BUCKET_OWNER_FULL_CONTROL: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{"Sid": "statement1", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
    "Action": "s3:PutObject", "Resource": "arn:aws:s3:::amzn-s3-demo-bucket/*",
    "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}}]
}"#;

const ALLOW_ALL_DENY_DELETE: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                {"Effect": "Deny", "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": "*"}]
}"#;

#[test]
fn documented_decisions() {
    use Decision::*;
    let alice = || user(ACCT_A, "alice");
    let bob_b = || user(ACCT_B, "bob");
    let anon = PrincipalFacts::anonymous;
    let b = "arn:aws:s3:::amzn-s3-demo-bucket";
    let cases = vec![
        Case { name: "home folder: list own prefix", identity: Some(HOME_FOLDERS), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[("s3:prefix", "home/alice/photos")], want: Allow },
        Case { name: "home folder: list another prefix", identity: Some(HOME_FOLDERS), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[("s3:prefix", "home/bob/")], want: ImplicitDeny },
        Case { name: "home folder: list without prefix", identity: Some(HOME_FOLDERS), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "home folder: read own object", identity: Some(HOME_FOLDERS), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:GetObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/home/alice/a.jpg", owner: ACCT_A, extra: &[], want: Allow },
        Case { name: "home folder: read another's object", identity: Some(HOME_FOLDERS), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:GetObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/home/bob/a.jpg", owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "IP deny: inside the range", identity: Some(USER_LIST_ANY), bucket_policy: Some(DENY_OUTSIDE_IP), who: alice(), kind: SubjectKind::User,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[], want: Allow },
        Case { name: "IP deny: the owner's root is denied too", identity: None, bucket_policy: Some(REQUIRE_TLS), who: root(ACCT_A), kind: SubjectKind::Root,
            action: "s3:GetObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[], want: ExplicitDeny },
        Case { name: "public read: anonymous GET", identity: None, bucket_policy: Some(PUBLIC_READ), who: anon(), kind: SubjectKind::Anonymous,
            action: "s3:GetObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[], want: Allow },
        Case { name: "public read: anonymous PUT", identity: None, bucket_policy: Some(PUBLIC_READ), who: anon(), kind: SubjectKind::Anonymous,
            action: "s3:PutObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "public read: anonymous list", identity: None, bucket_policy: Some(PUBLIC_READ), who: anon(), kind: SubjectKind::Anonymous,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "public read: other account's user without identity policy", identity: None, bucket_policy: Some(PUBLIC_READ), who: bob_b(), kind: SubjectKind::User,
            action: "s3:GetObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "referer: matching", identity: None, bucket_policy: Some(REFERER), who: anon(), kind: SubjectKind::Anonymous,
            action: "s3:GetObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[("aws:Referer", "https://example.com/page")], want: Allow },
        Case { name: "referer: absent", identity: None, bucket_policy: Some(REFERER), who: anon(), kind: SubjectKind::Anonymous,
            action: "s3:GetObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "cross account: root of B", identity: None, bucket_policy: Some(CROSS_ACCOUNT), who: root(ACCT_B), kind: SubjectKind::Root,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[], want: Allow },
        Case { name: "cross account: B's user without identity allow", identity: None, bucket_policy: Some(CROSS_ACCOUNT), who: bob_b(), kind: SubjectKind::User,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "cross account: B's user with identity allow", identity: Some(USER_LIST_ANY), bucket_policy: Some(CROSS_ACCOUNT), who: bob_b(), kind: SubjectKind::User,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[], want: Allow },
        Case { name: "cross account: identity allow alone", identity: Some(USER_LIST_ANY), bucket_policy: None, who: bob_b(), kind: SubjectKind::User,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "same account: naming the account delegates", identity: None, bucket_policy: Some(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":"s3:*","Resource":"*"}}"#),
            who: alice(), kind: SubjectKind::User, action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "same account: naming the user grants", identity: None, bucket_policy: Some(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:user/alice"},"Action":"s3:*","Resource":"*"}}"#),
            who: alice(), kind: SubjectKind::User, action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[], want: Allow },
        Case { name: "time window: inside", identity: Some(TIME_WINDOW), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:GetObject", resource: "arn:aws:s3:::x/k", owner: ACCT_A, extra: &[], want: Allow },
        Case { name: "max-keys: 5", identity: Some(MAX_KEYS), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[("s3:max-keys", "5")], want: Allow },
        Case { name: "max-keys: 1000", identity: Some(MAX_KEYS), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:ListBucket", resource: b, owner: ACCT_A, extra: &[("s3:max-keys", "1000")], want: ImplicitDeny },
        Case { name: "SSE required: missing", identity: Some(REQUIRE_SSE), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:PutObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[], want: ExplicitDeny },
        Case { name: "SSE required: present", identity: Some(REQUIRE_SSE), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:PutObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[("s3:x-amz-server-side-encryption", "AES256")], want: Allow },
        Case { name: "existing tag: production", identity: Some(EXISTING_TAG), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:GetObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[("s3:ExistingObjectTag/environment", "production")], want: Allow },
        Case { name: "existing tag: tag key case matters", identity: Some(EXISTING_TAG), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:GetObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[("s3:ExistingObjectTag/Environment", "production")], want: ImplicitDeny },
        Case { name: "bucket-owner-full-control: given", identity: None, bucket_policy: Some(BUCKET_OWNER_FULL_CONTROL), who: root(ACCT_B), kind: SubjectKind::Root,
            action: "s3:PutObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[("s3:x-amz-acl", "bucket-owner-full-control")], want: Allow },
        Case { name: "bucket-owner-full-control: missing", identity: None, bucket_policy: Some(BUCKET_OWNER_FULL_CONTROL), who: root(ACCT_B), kind: SubjectKind::Root,
            action: "s3:PutObject", resource: "arn:aws:s3:::amzn-s3-demo-bucket/k", owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "explicit deny beats allow", identity: Some(ALLOW_ALL_DENY_DELETE), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:DeleteObject", resource: "arn:aws:s3:::x/k", owner: ACCT_A, extra: &[], want: ExplicitDeny },
        Case { name: "allow all: other actions", identity: Some(ALLOW_ALL_DENY_DELETE), bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:PutObject", resource: "arn:aws:s3:::x/k", owner: ACCT_A, extra: &[], want: Allow },
        Case { name: "no policy: implicit deny", identity: None, bucket_policy: None, who: alice(), kind: SubjectKind::User,
            action: "s3:GetObject", resource: "arn:aws:s3:::x/k", owner: ACCT_A, extra: &[], want: ImplicitDeny },
        Case { name: "root: own account", identity: None, bucket_policy: None, who: root(ACCT_A), kind: SubjectKind::Root,
            action: "s3:GetObject", resource: "arn:aws:s3:::x/k", owner: ACCT_A, extra: &[], want: Allow },
        Case { name: "root: other account", identity: None, bucket_policy: None, who: root(ACCT_B), kind: SubjectKind::Root,
            action: "s3:GetObject", resource: "arn:aws:s3:::x/k", owner: ACCT_A, extra: &[], want: ImplicitDeny },
    ];
    for c in &cases {
        run(c);
    }
}

#[test]
fn session_policies_and_boundaries_narrow() {
    let role_session = PrincipalFacts {
        anonymous: false,
        account: ACCT_A.into(),
        arn: format!("arn:aws:sts::{ACCT_A}:assumed-role/reader/s1"),
        role_arn: Some(format!("arn:aws:iam::{ACCT_A}:role/reader")),
        is_root: false,
        aliases: Vec::new(),
    };
    let role_policy = parse(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#, Kind::Identity).unwrap();
    let session = parse(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#, Kind::Session).unwrap();
    let ids = [&role_policy];
    let ctx = ctx_for(&role_session, &[]);
    let t = |action, resource, policy| Target {
        action,
        resource,
        owner: ACCT_A,
        policy,
        policy_grants: true,
        acl: None,
        ignore_public_acls: false,
        restrict_public: false,
        root_backstop: false,
    };
    let s = Subject { kind: SubjectKind::RoleSession, facts: &role_session, identity: &ids, session: Some(&session), boundary: None };
    assert_eq!(authorize(&s, &t("s3:GetObject", "arn:aws:s3:::b/k", None), &ctx), Decision::Allow);
    assert_eq!(authorize(&s, &t("s3:PutObject", "arn:aws:s3:::b/k", None), &ctx), Decision::ImplicitDeny);
    assert_eq!(authorize(&s, &t("s3:GetObject", "arn:aws:s3:::c/k", None), &ctx), Decision::ImplicitDeny);
    // A bucket policy naming the role is narrowed by the session policy too;
    // one naming the session itself is not.
    let by_role = parse(&format!(r#"{{"Statement":{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCT_A}:role/reader"}},"Action":"s3:PutObject","Resource":"*"}}}}"#), Kind::Resource).unwrap();
    let by_session = parse(&format!(r#"{{"Statement":{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"s3:PutObject","Resource":"*"}}}}"#, role_session.arn), Kind::Resource).unwrap();
    let none: [&tessera_policy::Policy; 0] = [];
    let bare = Subject { identity: &none, ..s };
    assert_eq!(authorize(&bare, &t("s3:PutObject", "arn:aws:s3:::b/k", Some(&by_role)), &ctx), Decision::ImplicitDeny);
    assert_eq!(authorize(&bare, &t("s3:PutObject", "arn:aws:s3:::b/k", Some(&by_session)), &ctx), Decision::Allow);
    // A permission boundary caps the identity policies.
    let user_facts = user(ACCT_A, "carol");
    let boundary = parse(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:Get*","Resource":"*"}}"#, Kind::Identity).unwrap();
    let u = Subject { kind: SubjectKind::User, facts: &user_facts, identity: &ids, session: None, boundary: Some(&boundary) };
    assert_eq!(authorize(&u, &t("s3:GetObject", "arn:aws:s3:::b/k", None), &ctx), Decision::Allow);
    assert_eq!(authorize(&u, &t("s3:DeleteObject", "arn:aws:s3:::b/k", None), &ctx), Decision::ImplicitDeny);
}

#[test]
fn acls_combine_with_policies() {
    let owner = root(ACCT_A);
    let other = root(ACCT_B);
    let anon = PrincipalFacts::anonymous();
    let public_read = CannedAcl::PublicRead.expand((ACCT_A, "a"), (ACCT_A, "a"));
    let private = Acl::private(ACCT_A, "a");
    let deny_get = parse(r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"*"}}"#, Kind::Resource).unwrap();
    let none: [&tessera_policy::Policy; 0] = [];
    let decide = |who: &PrincipalFacts, kind, acl: &Acl, perm, policy: Option<&tessera_policy::Policy>, ignore_public| {
        let s = Subject { kind, facts: who, identity: &none, session: None, boundary: None };
        let t = Target {
            action: "s3:GetObject",
            resource: "arn:aws:s3:::b/k",
            owner: ACCT_A,
            policy,
            policy_grants: true,
            acl: Some(AclCheck { acl, permission: perm }),
            ignore_public_acls: ignore_public,
            restrict_public: false,
            root_backstop: false,
        };
        authorize(&s, &t, &ctx_for(who, &[]))
    };
    assert_eq!(decide(&anon, SubjectKind::Anonymous, &public_read, Permission::Read, None, false), Decision::Allow);
    assert_eq!(decide(&anon, SubjectKind::Anonymous, &public_read, Permission::Read, None, true), Decision::ImplicitDeny);
    assert_eq!(decide(&anon, SubjectKind::Anonymous, &private, Permission::Read, None, false), Decision::ImplicitDeny);
    assert_eq!(decide(&other, SubjectKind::Root, &public_read, Permission::Read, None, false), Decision::Allow);
    assert_eq!(decide(&other, SubjectKind::Root, &private, Permission::Read, None, false), Decision::ImplicitDeny);
    assert_eq!(decide(&anon, SubjectKind::Anonymous, &public_read, Permission::Read, Some(&deny_get), false), Decision::ExplicitDeny);
    assert_eq!(decide(&owner, SubjectKind::Root, &private, Permission::Read, None, false), Decision::Allow);
    let mut grant_b = private.clone();
    grant_b.grants.push(tessera_policy::Grant {
        grantee: tessera_policy::Grantee::User { id: ACCT_B.into(), display_name: "b".into() },
        permission: Permission::Read,
    });
    assert_eq!(decide(&other, SubjectKind::Root, &grant_b, Permission::Read, None, false), Decision::Allow);
    let bob = user(ACCT_B, "bob");
    assert_eq!(decide(&bob, SubjectKind::User, &grant_b, Permission::Read, None, false), Decision::ImplicitDeny, "B's users need B's policy");
    let _ = AclSubject { account: None };
}

#[test]
fn owner_root_can_always_manage_the_bucket_policy() {
    let owner = root(ACCT_A);
    let deny = parse(r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:*BucketPolicy","Resource":"*"}}"#, Kind::Resource).unwrap();
    let none: [&tessera_policy::Policy; 0] = [];
    let s = Subject { kind: SubjectKind::Root, facts: &owner, identity: &none, session: None, boundary: None };
    let mut t = Target {
        action: "s3:PutBucketPolicy",
        resource: "arn:aws:s3:::b",
        owner: ACCT_A,
        policy: Some(&deny),
        policy_grants: true,
        acl: None,
        ignore_public_acls: false,
        restrict_public: false,
        root_backstop: true,
    };
    assert_eq!(authorize(&s, &t, &Context::new()), Decision::Allow);
    t.root_backstop = false;
    assert_eq!(authorize(&s, &t, &Context::new()), Decision::ExplicitDeny);
}
