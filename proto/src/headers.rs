//! Request/response header list: names lowercased, values trimmed, order kept.

/// Header list as received. Names are ASCII-lowercased at parse time; values
/// are the raw value with surrounding whitespace trimmed. Order and
/// duplicates are kept (SigV4 canonicalization needs both).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Headers { entries: Vec::new() }
    }

    /// Room for `count` headers (the list's growth was about three
    /// reallocations per request).
    pub fn with_capacity(count: usize) -> Self {
        Headers { entries: Vec::with_capacity(count) }
    }

    /// Appends a header; `name` is lowercased here.
    pub fn push(&mut self, name: &str, value: &str) {
        self.entries.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }

    /// First value of `name` (which must be given lowercase).
    pub fn get(&self, name: &str) -> Option<&str> {
        debug_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// All values of `name` in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Drops every value of `name` (lowercase).
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| n != name);
    }

    /// Drops the last value of `name` (lowercase), if any.
    pub fn remove_last(&mut self, name: &str) {
        if let Some(i) = self.entries.iter().rposition(|(n, _)| n == name) {
            self.entries.remove(i);
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
