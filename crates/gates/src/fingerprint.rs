//! A gate spec's fingerprint: sha256 of a canonical JSON text of the parts that decide what
//! is measured and how it is judged.
//!
//! Canonical: object keys sorted, no whitespace, strings escaped as JSON, integers as
//! integers, floats in Rust's shortest round-trip form (`0.8`, `1.0`), an absent value as
//! `null`. Written here rather than through a serde map so that no feature of a dependency
//! (serde_json's or toml's `preserve_order`) can change the order, and so the hash.

use sha2::{Digest, Sha256};

/// Bumped when the canonical form changes, so that old fingerprints cannot match new ones.
const SCHEME: &str = "ckb-gate-spec-v1";

/// `sha256:<hex>` of `{SCHEME: {key: value, ...}}` with `parts` as the inner object.
pub(crate) fn fingerprint(parts: &[(&str, Option<toml::Value>)]) -> String {
    let mut inner: Vec<(&str, Option<&toml::Value>)> = parts.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    inner.sort_by(|a, b| a.0.cmp(b.0));
    let mut text = format!("{{{}:{{", json_string(SCHEME));
    for (i, (key, value)) in inner.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text += &json_string(key);
        text.push(':');
        match value {
            Some(value) => write_canonical(value, &mut text),
            None => text += "null",
        }
    }
    text += "}}";
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn write_canonical(value: &toml::Value, out: &mut String) {
    match value {
        toml::Value::String(s) => *out += &json_string(s),
        toml::Value::Integer(i) => *out += &i.to_string(),
        toml::Value::Float(f) => *out += &format!("{f:?}"),
        toml::Value::Boolean(b) => *out += if *b { "true" } else { "false" },
        toml::Value::Datetime(d) => *out += &json_string(&d.to_string()),
        toml::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        toml::Value::Table(table) => {
            let mut keys: Vec<&String> = table.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                *out += &json_string(key);
                out.push(':');
                write_canonical(&table[key], out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        let value: toml::Value = toml::from_str(text).unwrap();
        let mut out = String::new();
        write_canonical(&value, &mut out);
        out
    }

    #[test]
    fn canonical_form() {
        assert_eq!(canonical("b = 1\na = [0.8, 1.0, \"x\\\"y\", true]"), r#"{"a":[0.8,1.0,"x\"y",true],"b":1}"#);
        // An integer and the float of the same value are different specs.
        assert_ne!(canonical("a = 1"), canonical("a = 1.0"));
    }

    #[test]
    fn a_known_fingerprint_stays_put() {
        // sha256 of `{"ckb-gate-spec-v1":{"a":null,"b":1}}` (Python's hashlib): a change to the
        // canonical form turns every record stale, so it must be deliberate, with SCHEME bumped.
        let print = fingerprint(&[("b", Some(toml::Value::Integer(1))), ("a", None)]);
        assert_eq!(print, "sha256:c9650b787671d22fc48677bfd6b20320f201c89a26e366e7512ad2eb1ed83be6");
    }
}
