//! Governance rules beyond who-may-do-what: what a publication must say about itself
//! (required metadata per kind). `governance` in the access configuration.

use ledger_client::event::{Kind, Metadata};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `governance` in the access configuration (specs/access.md, "Governance").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// Metadata keys a publication of each kind must carry with a non-empty value.
    #[serde(default = "default_required_metadata")]
    pub required_metadata: BTreeMap<Kind, Vec<String>>,
}

/// A dataset says where it comes from and under which licence it may be used.
fn default_required_metadata() -> BTreeMap<Kind, Vec<String>> {
    BTreeMap::from([(Kind::Dataset, vec!["license".into(), "source".into()])])
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        Self {
            required_metadata: default_required_metadata(),
        }
    }
}

impl GovernanceConfig {
    /// Refuses rules that could never be met.
    pub fn check(&self) -> Result<(), String> {
        for (kind, keys) in &self.required_metadata {
            for k in keys {
                if ledger_client::event::validate_meta_key(k).is_err() {
                    return Err(format!(
                        "governance.required_metadata.{}: {k:?} is not a valid metadata key",
                        kind.as_str()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether `meta` carries every key `kind` requires, naming the missing ones.
    pub fn check_metadata(&self, kind: Kind, meta: Option<&Metadata>) -> Result<(), String> {
        let Some(required) = self.required_metadata.get(&kind) else {
            return Ok(());
        };
        let missing: Vec<&str> = required
            .iter()
            .filter(|k| {
                meta.and_then(|m| m.get(*k))
                    .is_none_or(|v| v.trim().is_empty())
            })
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "a {} must carry the metadata {} (governance.required_metadata); missing: {}",
                kind.as_str(),
                required.join(", "),
                missing.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_needs_a_licence_and_a_source_by_default() {
        let g = GovernanceConfig::default();
        let meta = |pairs: &[(&str, &str)]| -> Metadata {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = g.check_metadata(Kind::Dataset, None).unwrap_err();
        assert!(e.contains("missing: license, source"), "{e}");
        let e = g
            .check_metadata(
                Kind::Dataset,
                Some(&meta(&[("license", "CC-BY-4.0"), ("source", " ")])),
            )
            .unwrap_err();
        assert!(e.contains("missing: source"), "{e}");
        g.check_metadata(
            Kind::Dataset,
            Some(&meta(&[("license", "CC-BY-4.0"), ("source", "s3://x")])),
        )
        .unwrap();
        g.check_metadata(Kind::Model, None).unwrap();
    }

    #[test]
    fn rules_parse_strictly() {
        let g: GovernanceConfig =
            serde_json::from_str(r#"{"required_metadata": {"model": ["license"]}}"#).unwrap();
        assert!(g.check_metadata(Kind::Model, None).is_err());
        assert!(
            g.check_metadata(Kind::Dataset, None).is_ok(),
            "replaces the default"
        );
        assert!(serde_json::from_str::<GovernanceConfig>(r#"{"required": {}}"#).is_err());
        assert!(serde_json::from_str::<GovernanceConfig>(
            r#"{"required_metadata": {"robot": []}}"#
        )
        .is_err());
        let bad: GovernanceConfig =
            serde_json::from_str(r#"{"required_metadata": {"model": ["no spaces"]}}"#).unwrap();
        assert!(bad.check().unwrap_err().contains("no spaces"));
    }
}
