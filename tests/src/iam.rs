//! IAM and STS clients for a test server, and access-control helpers.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use crate::server::Server;

/// An account of the users file of [`accounts_opts`]: (access key, secret, id).
pub struct Account {
    pub access_key: &'static str,
    pub secret_key: &'static str,
    pub id: &'static str,
}

pub const ALT: Account = Account {
    access_key: "AKIAALTACCOUNT000001",
    secret_key: "alt-account-secret-0123456789abcdefghijk",
    id: "alt-account",
};

pub const THIRD: Account = Account {
    access_key: "AKIATHIRDACCOUNT0001",
    secret_key: "third-account-secret-0123456789abcdefghi",
    id: "third-account",
};

/// Server options with the ALT and THIRD accounts in a users file.
pub fn accounts_opts() -> crate::ServerOpts {
    crate::ServerOpts {
        users: Some(format!(
            "{} {} {} Alt Account\n{} {} {} Third Account\n",
            ALT.access_key, ALT.secret_key, ALT.id, THIRD.access_key, THIRD.secret_key, THIRD.id
        )),
        ..Default::default()
    }
}

impl Server {
    pub fn iam_for(&self, access_key: &str, secret_key: &str, token: Option<&str>) -> aws_sdk_iam::Client {
        let conf = aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                access_key,
                secret_key,
                token.map(str::to_string),
                None,
                "tessera-tests",
            ))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_iam::Client::from_conf(conf)
    }

    /// The IAM client of the root account.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        self.iam_for(&self.access_key, &self.secret_key, None)
    }

    pub fn sts_for(&self, access_key: &str, secret_key: &str, token: Option<&str>) -> aws_sdk_sts::Client {
        let conf = aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                access_key,
                secret_key,
                token.map(str::to_string),
                None,
                "tessera-tests",
            ))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_sts::Client::from_conf(conf)
    }

    /// An S3 client with temporary credentials.
    pub fn client_with_token(&self, access_key: &str, secret_key: &str, token: &str) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(access_key, secret_key, Some(token.to_string()), None, "tessera-tests"))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// An unsigned GET/PUT/... as an anonymous client sends it: (status, body).
    pub fn anonymous(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut req = self.raw_request(method, path);
        if !body.is_empty() || method == "PUT" {
            req = req.body(body.to_vec());
        }
        let r = self.send(&req);
        (r.status, r.body)
    }
}

/// A user of the root account with an access key: (user ARN, key, secret).
pub async fn new_user(iam: &aws_sdk_iam::Client, name: &str) -> (String, String, String) {
    let u = crate::ok(iam.create_user().user_name(name).send().await, "create user");
    let arn = u.user().map(|u| u.arn().to_string()).unwrap_or_default();
    let k = crate::ok(iam.create_access_key().user_name(name).send().await, "create key");
    let k = k.access_key().expect("access key");
    (arn, k.access_key_id().to_string(), k.secret_access_key().to_string())
}

/// A policy document allowing `actions` on `resources`.
pub fn allow(actions: &[&str], resources: &[&str]) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{},"Resource":{}}}]}}"#,
        json_list(actions),
        json_list(resources)
    )
}

pub fn json_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(","))
}
