//! Request/response header list: names lowercased, values trimmed, order kept.

/// Header list as received. Names are ASCII-lowercased at parse time; values
/// are the raw value with surrounding whitespace trimmed. Order and
/// duplicates are kept (SigV4 canonicalization needs both).
///
/// Every name and value lives in one string, back to back, so a request's
/// headers take two allocations (the text and the spans) rather than two
/// per header: a GET signed in its headers carried 4 headers, 8 of the 50
/// allocations per request (callgrind).
#[derive(Clone, Default)]
pub struct Headers {
    /// Names and values back to back; a removed header's bytes stay.
    text: String,
    /// Per header: where its name starts, where its name ends (its value
    /// starts there) and where its value ends, in `text`.
    spans: Vec<(u32, u32, u32)>,
}

/// Room a list takes at its first header: a typical request's headers fit.
const FIRST_TEXT_BYTES: usize = 512;
const FIRST_SPANS: usize = 12;

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    /// Appends a header; `name` is lowercased here.
    pub fn push(&mut self, name: &str, value: &str) {
        let value = value.trim();
        if self.spans.is_empty() && self.text.capacity() == 0 {
            self.text.reserve(FIRST_TEXT_BYTES.max(name.len() + value.len()));
            self.spans.reserve(FIRST_SPANS);
        }
        let start = self.text.len();
        self.text.push_str(name);
        self.text[start..].make_ascii_lowercase();
        let name_end = self.text.len();
        self.text.push_str(value);
        // Header lists are bounded far below 4 GiB (the request head's
        // limit); a list that outgrows u32 offsets would be a bug, never input.
        let pos = |n: usize| u32::try_from(n).expect("header list beyond 4 GiB");
        self.spans.push((pos(start), pos(name_end), pos(self.text.len())));
    }

    fn entry(&self, &(s, n, e): &(u32, u32, u32)) -> (&str, &str) {
        (&self.text[s as usize..n as usize], &self.text[n as usize..e as usize])
    }

    /// First value of `name` (which must be given lowercase).
    pub fn get(&self, name: &str) -> Option<&str> {
        debug_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// All values of `name` in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Drops every value of `name` (lowercase).
    pub fn remove(&mut self, name: &str) {
        let text = &self.text;
        self.spans.retain(|&(s, n, _)| &text[s as usize..n as usize] != name);
    }

    /// Drops the last value of `name` (lowercase), if any.
    pub fn remove_last(&mut self, name: &str) {
        if let Some(i) = self.spans.iter().rposition(|&(s, n, _)| &self.text[s as usize..n as usize] == name) {
            self.spans.remove(i);
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().map(|sp| self.entry(sp))
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// Two lists are equal when they hold the same headers in the same order
/// (the bytes of removed headers do not count).
impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_values_trimmed_order_and_duplicates_kept() {
        let mut h = Headers::new();
        assert!(h.is_empty() && h.get("host").is_none());
        h.push("Host", "  example.com \t");
        h.push("X-Amz-Meta-A", "1");
        h.push("x-amz-meta-a", " 2 ");
        h.push("Empty", "   ");
        h.push("ÜNICODE-ÄÖ", " wert ");
        assert_eq!(h.len(), 5);
        assert_eq!(h.get("host"), Some("example.com"));
        assert_eq!(h.get("x-amz-meta-a"), Some("1"));
        assert_eq!(h.get_all("x-amz-meta-a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h.get("empty"), Some(""));
        // Only ASCII letters are lowercased; other bytes stay as they came.
        assert_eq!(h.get("Ünicode-äö"), None);
        assert_eq!(h.iter().nth(4), Some(("Ünicode-ÄÖ", "wert")));
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("host", "example.com"), ("x-amz-meta-a", "1"), ("x-amz-meta-a", "2"), ("empty", ""), ("Ünicode-ÄÖ", "wert")]
        );
        assert!(h.contains("empty") && !h.contains("missing"));
    }

    #[test]
    fn removals_drop_headers_and_equality_ignores_their_bytes() {
        let mut h = Headers::new();
        for (n, v) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("a", "5")] {
            h.push(n, v);
        }
        h.remove_last("a");
        assert_eq!(h.get_all("a").collect::<Vec<_>>(), ["1", "3"]);
        h.remove_last("zz");
        assert_eq!(h.len(), 4);
        h.remove("a");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("b", "2"), ("c", "4")]);
        h.push("D", "6");
        let mut fresh = Headers::new();
        for (n, v) in [("b", "2"), ("c", "4"), ("d", "6")] {
            fresh.push(n, v);
        }
        assert_eq!(h, fresh);
        assert_eq!(format!("{h:?}"), format!("{fresh:?}"));
        assert_eq!(h.clone(), fresh);
        fresh.push("e", "7");
        assert_ne!(h, fresh);
    }

    #[test]
    fn long_lists_and_values_outgrow_the_first_reservation() {
        let mut h = Headers::new();
        let long = "v".repeat(10_000);
        for i in 0..200 {
            h.push(&format!("X-Header-{i}"), &long[..i * 50]);
        }
        assert_eq!(h.len(), 200);
        for i in 0..200 {
            assert_eq!(h.get(&format!("x-header-{i}")), Some(&long[..i * 50]), "{i}");
        }
    }
}
