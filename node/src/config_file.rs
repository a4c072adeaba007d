//! `tessera server --config FILE`: a TOML file whose keys are the flags'
//! names (`address = "0.0.0.0:9000"`, `tls-cert = "/etc/tessera/cert.pem"`,
//! `data-dirs = ["/srv/disk1", "/srv/disk2"]`).
//!
//! The file is turned into the command-line arguments it stands for, and
//! those go through the same parser as typed flags: one set of value checks
//! and defaults. A flag given on the command line or through its
//! environment variable wins over the file. A key that is not a flag's name
//! is an error naming it, reported before anything else happens.

use std::path::Path;

/// Largest config file read: a node's settings are a few hundred bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;
/// The key of the positional data dirs.
pub const DATA_DIRS_KEY: &str = "data-dirs";

/// One setting the file may hold, as the parser knows it.
pub struct Setting {
    /// The flag's long name without `--` (the file's key), or `DATA_DIRS_KEY`.
    pub key: String,
    /// Whether it is the positional list of data dirs.
    pub positional: bool,
    /// Whether the command line or the environment already set it.
    pub given: bool,
}

/// Reads and parses the file into a table.
pub fn read(path: &Path) -> Result<toml::Table, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("--config {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(format!("--config {}: larger than {MAX_CONFIG_FILE_BYTES} bytes", path.display()));
    }
    text.parse::<toml::Table>().map_err(|e| format!("--config {}: {e}", path.display()))
}

/// The arguments the file adds: `--key value` for each setting not given
/// otherwise, and the data dirs (positional) last. Unknown keys and values
/// of the wrong shape are errors naming the key.
pub fn to_args(table: &toml::Table, settings: &[Setting], file: &Path) -> Result<(Vec<String>, Vec<String>), String> {
    let mut flags = Vec::new();
    let mut positional = Vec::new();
    for (key, value) in table {
        let Some(s) = settings.iter().find(|s| &s.key == key) else {
            return Err(format!("--config {}: unknown key {key:?}", file.display()));
        };
        let values = match value {
            toml::Value::Array(items) => items.iter().map(|v| scalar(v, key, file)).collect::<Result<Vec<_>, _>>()?,
            v => vec![scalar(v, key, file)?],
        };
        if s.given {
            continue;
        }
        if s.positional {
            positional.extend(values);
        } else {
            for v in values {
                flags.push(format!("--{key}"));
                flags.push(v);
            }
        }
    }
    Ok((flags, positional))
}

fn scalar(v: &toml::Value, key: &str, file: &Path) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!("--config {}: key {key:?} must be a string, an integer, or a list of them", file.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Vec<Setting> {
        vec![
            Setting { key: "address".into(), positional: false, given: false },
            Setting { key: "region".into(), positional: false, given: true },
            Setting { key: "domain".into(), positional: false, given: false },
            Setting { key: DATA_DIRS_KEY.into(), positional: true, given: false },
        ]
    }

    #[test]
    fn file_to_args() {
        let t: toml::Table = "address = \"0.0.0.0:9000\"\nregion = \"eu\"\ndomain = [\"a\", \"b\"]\ndata-dirs = [\"/d1\", \"/d2\"]\n"
            .parse()
            .unwrap();
        let (flags, pos) = to_args(&t, &settings(), Path::new("f")).unwrap();
        assert_eq!(flags, ["--address", "0.0.0.0:9000", "--domain", "a", "--domain", "b"]);
        assert_eq!(pos, ["/d1", "/d2"]);
    }

    #[test]
    fn unknown_key_and_bad_value() {
        let t: toml::Table = "adress = \"x\"".parse().unwrap();
        let e = to_args(&t, &settings(), Path::new("f")).unwrap_err();
        assert!(e.contains("unknown key \"adress\""), "{e}");
        let t: toml::Table = "address = { a = 1 }".parse().unwrap();
        assert!(to_args(&t, &settings(), Path::new("f")).is_err());
    }
}
