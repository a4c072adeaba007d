//! No input makes the policy parser or evaluator panic: seeded random
//! documents, mutations of valid ones, and hostile shapes. (A seeded loop
//! in a normal test, so it runs in CI; `TESSERA_POLICY_FUZZ_ITERS=N` runs
//! more.)

use tessera_policy::{authorize, parse, Context, Kind, PrincipalFacts, Subject, SubjectKind, Target};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    r#"{"Version":"2012-10-17","Statement":[{"Sid":"A1","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::1:root","*"]},"Action":["s3:Get*","s3:List?ucket"],"Resource":["arn:aws:s3:::b/${aws:username}/*","arn:aws:s3:::b"],"Condition":{"StringLike":{"s3:prefix":["home/${aws:username, 'x'}/*"]},"IpAddress":{"aws:SourceIp":["10.0.0.0/8","::1/128"]},"ForAnyValue:StringEqualsIgnoreCase":{"s3:RequestObjectTagKeys":["a"]},"DateLessThanIfExists":{"aws:CurrentTime":"2030-01-01T00:00:00Z"},"NumericLessThan":{"s3:max-keys":5},"Bool":{"aws:SecureTransport":false},"Null":{"s3:delimiter":"true"},"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/*"},"BinaryEquals":{"x:y":"AAEC"}}}]}"#,
    r#"{"Statement":{"Effect":"Deny","NotPrincipal":{"CanonicalUser":"abc"},"NotAction":"iam:*","NotResource":"*"}}"#,
    r#"{"Version":"2008-10-17","Id":"x","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#,
];

const ALPHABET: &[u8] = b"{}[]\":,${}*?/\\ abcdefghijklmnopqrstuvwxyzAEIOSTU0123456789-_.\x00\xff";

fn mutate(rng: &mut Rng, s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    for _ in 0..1 + rng.below(8) {
        let pos = rng.below(b.len() + 1);
        match rng.below(4) {
            0 if pos < b.len() => {
                b.remove(pos);
            }
            1 => b.insert(pos, ALPHABET[rng.below(ALPHABET.len())]),
            2 if pos < b.len() => b[pos] = ALPHABET[rng.below(ALPHABET.len())],
            _ => {
                let start = rng.below(b.len());
                let end = (start + rng.below(40)).min(b.len());
                let chunk = b[start..end].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
        }
    }
    b
}

fn exercise(text: &str, ctx: &Context) {
    for kind in [Kind::Identity, Kind::Resource, Kind::Trust, Kind::Session] {
        let Ok(p) = parse(text, kind) else { continue };
        let facts = PrincipalFacts {
            anonymous: false,
            account: "1".into(),
            arn: "arn:aws:iam::1:user/u".into(),
            role_arn: None,
            is_root: false,
            aliases: Vec::new(),
        };
        let ids = [&p];
        let s = Subject { kind: SubjectKind::User, facts: &facts, identity: &ids, session: Some(&p), boundary: Some(&p) };
        let t = Target {
            action: "s3:GetObject",
            resource: "arn:aws:s3:::b/u/k",
            owner: "2",
            policy: Some(&p),
            policy_grants: true,
            acl: None,
            ignore_public_acls: false,
            restrict_public: false,
            root_backstop: false,
        };
        let _ = authorize(&s, &t, ctx);
        let _ = tessera_policy::public::policy_is_public(&p);
    }
}

#[test]
fn parser_and_evaluator_never_panic() {
    let iters: usize = std::env::var("TESSERA_POLICY_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut ctx = Context::new();
    ctx.insert("aws:username", "u").insert("aws:SourceIp", "10.1.2.3").insert("s3:prefix", "home/u/x");
    ctx.insert("aws:CurrentTime", "2024-01-01T00:00:00Z").insert("s3:max-keys", "3");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for seed in SEEDS {
        exercise(seed, &ctx);
    }
    for _ in 0..iters {
        let seed = SEEDS[rng.below(SEEDS.len())];
        let bytes = mutate(&mut rng, seed);
        let text = String::from_utf8_lossy(&bytes);
        exercise(&text, &ctx);
    }
}

#[test]
fn hostile_shapes() {
    let ctx = Context::new();
    let cases = [
        "[".repeat(100_000),
        "{\"Statement\":".repeat(10_000),
        format!(r#"{{"Statement":{{"Effect":"Allow","Action":"{}","Resource":"*"}}}}"#, "s3:*".repeat(10_000)),
        format!(r#"{{"Statement":{{"Effect":"Allow","Action":"s3:{}","Resource":"*"}}}}"#, "*a".repeat(3000)),
        format!(r#"{{"Statement":{{"Effect":"Allow","Action":"*","Resource":"arn:{}b"}}}}"#, "*a".repeat(3000)),
        r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"1.2.3.4/99"}}}}"#.into(),
        r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"${${${}}}"}}"#.into(),
        "\u{0}".into(),
        String::new(),
    ];
    for c in &cases {
        exercise(c, &ctx);
    }
}
