//! The request context: condition keys and their values, as the caller
//! observed them (source address, time, user agent, S3 request keys...).

use std::collections::HashMap;

/// Condition keys are case-insensitive, except what follows a `/` in a
/// tag key (`s3:ExistingObjectTag/<tag>`, `aws:ResourceTag/<tag>`): tag
/// keys are case-sensitive.
pub fn normalize_key(key: &str) -> String {
    match key.split_once('/') {
        Some((head, tail)) => format!("{}/{}", head.to_ascii_lowercase(), tail),
        None => key.to_ascii_lowercase(),
    }
}

/// Condition keys with their values (a key can be multivalued, e.g.
/// `s3:RequestObjectTagKeys`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    keys: HashMap<String, Vec<String>>,
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value to `key`.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.keys.entry(normalize_key(key)).or_default().push(value.into());
        self
    }

    /// Sets `key` to exactly `values` (an empty list means the key is
    /// present with no values, which `ForAllValues` treats as true).
    pub fn set(&mut self, key: &str, values: Vec<String>) -> &mut Self {
        self.keys.insert(normalize_key(key), values);
        self
    }

    pub fn remove(&mut self, key: &str) {
        self.keys.remove(&normalize_key(key));
    }

    /// The values of `key`, `None` when the request has no such key.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.keys.get(&normalize_key(key)).map(Vec::as_slice)
    }

    /// The single value of `key` (the first when there are several).
    pub fn single(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.first()).map(String::as_str)
    }
}
