//! The AWS managed policies clients attach by ARN
//! (`arn:aws:iam::aws:policy/<name>`), built in: their documents as AWS
//! publishes them, reduced to the services served here (s3, iam, sts).

use std::sync::{Arc, OnceLock};

use tessera_policy::Kind;

use super::model::Doc;

/// The account of AWS managed policies in their ARNs.
pub const AWS_ACCOUNT: &str = "aws";

const POLICIES: &[(&str, &str, &str)] = &[
    (
        "AdministratorAccess",
        "ANPAIWMBCKSKIEE64ZLYK",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    ),
    (
        "AmazonS3FullAccess",
        "ANPAIFIR6V6BVTRAHWINE",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","s3-object-lambda:*"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonS3ReadOnlyAccess",
        "ANPAIZTJ4DXE7G6AGAE6M",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*","s3:Describe*","s3-object-lambda:Get*","s3-object-lambda:List*"],"Resource":"*"}]}"#,
    ),
    (
        "IAMFullAccess",
        "ANPAI7XKCFMBPM3QQRRVQ",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:*","organizations:DescribeAccount","organizations:DescribeOrganization","organizations:DescribeOrganizationalUnit","organizations:DescribePolicy","organizations:ListChildren","organizations:ListParents","organizations:ListPoliciesForTarget","organizations:ListRoots","organizations:ListPolicies","organizations:ListTargetsForPolicy"],"Resource":"*"}]}"#,
    ),
    (
        "IAMReadOnlyAccess",
        "ANPAJKSO7NDY4T57MWDSQ",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:GenerateCredentialReport","iam:GenerateServiceLastAccessedDetails","iam:Get*","iam:List*","iam:SimulateCustomPolicy","iam:SimulatePrincipalPolicy"],"Resource":"*"}]}"#,
    ),
    (
        "IAMUserChangePassword",
        "ANPAJ4L4MM2A7QIEB56MS",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:ChangePassword"],"Resource":["arn:aws:iam::*:user/${aws:username}"]},{"Effect":"Allow","Action":["iam:GetAccountPasswordPolicy"],"Resource":"*"}]}"#,
    ),
];

/// A built-in managed policy: name, id, document.
pub struct AwsPolicy {
    pub name: &'static str,
    pub id: &'static str,
    pub doc: Doc,
}

impl AwsPolicy {
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{AWS_ACCOUNT}:policy/{}", self.name)
    }
}

/// Every built-in policy (parsed once).
pub fn all() -> &'static [AwsPolicy] {
    static ALL: OnceLock<Vec<AwsPolicy>> = OnceLock::new();
    ALL.get_or_init(|| {
        POLICIES
            .iter()
            .filter_map(|(name, id, text)| {
                let doc = Doc::new(text.to_string(), Kind::Identity).ok()?;
                Some(AwsPolicy { name, id, doc })
            })
            .collect()
    })
}

/// The built-in policy named by `arn`.
pub fn by_arn(arn: &str) -> Option<&'static AwsPolicy> {
    let name = arn.strip_prefix("arn:aws:iam::aws:policy/")?;
    // AWS managed policies may carry a path; ours all live at `/`.
    all().iter().find(|p| p.name == name)
}

/// The parsed document of a built-in policy.
pub fn policy(arn: &str) -> Option<Arc<tessera_policy::Policy>> {
    by_arn(arn).map(|p| p.doc.parsed.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_parse() {
        assert_eq!(super::all().len(), super::POLICIES.len());
        assert!(super::by_arn("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess").is_some());
        assert!(super::by_arn("arn:aws:iam::aws:policy/Nope").is_none());
    }
}
