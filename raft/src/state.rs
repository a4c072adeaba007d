//! The cluster configuration: a versioned key → value map plus the ring
//! version, changed only by applying committed `Command`s in log order.
//! Pure: no I/O, no openraft types beyond the log index that versions a key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A change to the configuration, proposed through Raft (FORMAT BOUNDARY:
/// it is stored in log entries and snapshots as JSON; add variants, never
/// change one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets `key` to `value`; its version becomes the entry's log index.
    Put { key: String, value: Vec<u8> },
    /// Removes `key` (applies whether or not it exists).
    Delete { key: String },
    /// Applies only if the version of `key` is `expect` (0: the key must be
    /// absent): sets it to `value`, or removes it when `value` is `None`.
    /// Bucket creation is a `Cas` with `expect: 0`, atomic across the cluster.
    Cas { key: String, expect: u64, value: Option<Vec<u8>> },
    /// Moves the ring (placement) version to `version`; applies only if it
    /// is greater than the current one.
    SetRing { version: u64 },
    /// Applies every write (in order) only if every check holds (a key's
    /// version is the one given, 0: absent); otherwise changes nothing. The
    /// IAM store's changes are one each, checked against its guard key.
    /// A build without this variant cannot read it: every node of a
    /// cluster must run a build that has it before it is proposed.
    Txn { checks: Vec<(String, u64)>, writes: Vec<(String, Option<Vec<u8>>)> },
}

/// The outcome of one applied `Command`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the command changed the state as asked (`Cas` and `SetRing`
    /// can be refused; `Put` and `Delete` always apply).
    pub ok: bool,
    /// The key's version after the command (0: absent); for `SetRing` the
    /// ring version after it.
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// The log index of the entry that wrote the value (unique, increasing).
    pub version: u64,
    pub value: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigState {
    pub keys: BTreeMap<String, Versioned>,
    pub ring_version: u64,
    /// A chain hash of every entry applied so far (its index, term and
    /// command): two nodes at the same applied index agree on it iff they
    /// applied the same history. FNV-1a 64 over (previous, index, term,
    /// command JSON or a tag for a blank or membership entry).
    pub history: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

impl ConfigState {
    pub fn get(&self, key: &str) -> Option<&Versioned> {
        self.keys.get(key)
    }

    /// Folds an applied entry into the history hash. `what` is the command's
    /// JSON, or a fixed tag for entries without one.
    pub fn record(&mut self, index: u64, term: u64, what: &[u8]) {
        let mut h = if self.history == 0 { FNV_OFFSET } else { self.history };
        h = fnv(h, &index.to_le_bytes());
        h = fnv(h, &term.to_le_bytes());
        h = fnv(h, what);
        self.history = h;
    }

    /// Applies `cmd` as the entry at `index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Response {
        match cmd {
            Command::Put { key, value } => {
                self.keys.insert(key.clone(), Versioned { version: index, value: value.clone() });
                Response { ok: true, version: index }
            }
            Command::Delete { key } => {
                self.keys.remove(key);
                Response { ok: true, version: 0 }
            }
            Command::Cas { key, expect, value } => {
                let current = self.keys.get(key).map_or(0, |v| v.version);
                if current != *expect {
                    return Response { ok: false, version: current };
                }
                match value {
                    Some(value) => {
                        self.keys.insert(key.clone(), Versioned { version: index, value: value.clone() });
                        Response { ok: true, version: index }
                    }
                    None => {
                        self.keys.remove(key);
                        Response { ok: true, version: 0 }
                    }
                }
            }
            Command::Txn { checks, writes } => {
                for (key, expect) in checks {
                    let current = self.keys.get(key).map_or(0, |v| v.version);
                    if current != *expect {
                        return Response { ok: false, version: current };
                    }
                }
                for (key, value) in writes {
                    match value {
                        Some(value) => {
                            self.keys.insert(key.clone(), Versioned { version: index, value: value.clone() });
                        }
                        None => {
                            self.keys.remove(key);
                        }
                    }
                }
                Response { ok: true, version: index }
            }
            Command::SetRing { version } => {
                if *version > self.ring_version {
                    self.ring_version = *version;
                    Response { ok: true, version: *version }
                } else {
                    Response { ok: false, version: self.ring_version }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Command {
        Command::Put { key: k.into(), value: v.into() }
    }

    #[test]
    fn put_delete_cas_ring() {
        let mut s = ConfigState::default();
        assert_eq!(s.apply(3, &put("a", "1")), Response { ok: true, version: 3 });
        assert_eq!(s.get("a").unwrap().value, b"1");
        // Create-if-absent loses against an existing key, and says its version.
        let create = Command::Cas { key: "a".into(), expect: 0, value: Some(b"2".to_vec()) };
        assert_eq!(s.apply(4, &create), Response { ok: false, version: 3 });
        let swap = Command::Cas { key: "a".into(), expect: 3, value: Some(b"2".to_vec()) };
        assert_eq!(s.apply(5, &swap), Response { ok: true, version: 5 });
        assert_eq!(s.apply(6, &swap), Response { ok: false, version: 5 });
        let remove = Command::Cas { key: "a".into(), expect: 5, value: None };
        assert_eq!(s.apply(7, &remove), Response { ok: true, version: 0 });
        assert!(s.get("a").is_none());
        let create = Command::Cas { key: "a".into(), expect: 0, value: Some(b"3".to_vec()) };
        assert_eq!(s.apply(8, &create), Response { ok: true, version: 8 });
        assert_eq!(s.apply(9, &Command::Delete { key: "a".into() }), Response { ok: true, version: 0 });
        assert_eq!(s.apply(10, &Command::SetRing { version: 2 }), Response { ok: true, version: 2 });
        assert_eq!(s.apply(11, &Command::SetRing { version: 2 }), Response { ok: false, version: 2 });
        assert_eq!(s.apply(12, &Command::SetRing { version: 1 }), Response { ok: false, version: 2 });
    }

    #[test]
    fn txn_applies_all_writes_or_none() {
        let mut s = ConfigState::default();
        s.apply(1, &put("g", "0"));
        s.apply(2, &put("a", "1"));
        let txn = |expect: u64| Command::Txn {
            checks: vec![("g".into(), expect)],
            writes: vec![("g".into(), Some(b"1".to_vec())), ("a".into(), None), ("b".into(), Some(b"2".to_vec()))],
        };
        // A check that fails changes nothing and names the key's version.
        assert_eq!(s.apply(3, &txn(7)), Response { ok: false, version: 1 });
        assert_eq!(s.get("a").unwrap().version, 2);
        assert!(s.get("b").is_none());
        assert_eq!(s.apply(4, &txn(1)), Response { ok: true, version: 4 });
        assert!(s.get("a").is_none());
        assert_eq!(s.get("b").unwrap(), &Versioned { version: 4, value: b"2".to_vec() });
        assert_eq!(s.get("g").unwrap().version, 4);
        // Absent keys check as version 0.
        let create = Command::Txn { checks: vec![("c".into(), 0)], writes: vec![("c".into(), Some(vec![]))] };
        assert!(s.apply(5, &create).ok);
        assert!(!s.apply(6, &create).ok);
    }

    #[test]
    fn history_hash_depends_on_order_index_and_term() {
        let mut a = ConfigState::default();
        let mut b = ConfigState::default();
        a.record(1, 1, b"x");
        a.record(2, 1, b"y");
        b.record(1, 1, b"y");
        b.record(2, 1, b"x");
        assert_ne!(a.history, b.history);
        let mut c = ConfigState::default();
        c.record(1, 2, b"x");
        c.record(2, 1, b"y");
        assert_ne!(a.history, c.history);
        let mut d = ConfigState::default();
        d.record(1, 1, b"x");
        d.record(2, 1, b"y");
        assert_eq!(a.history, d.history);
    }
}
