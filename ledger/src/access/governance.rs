//! Governance rules beyond who-may-do-what: what a publication must say about itself
//! (required metadata per kind), which lifecycle transitions need a quorum of approvals
//! from distinct principals holding a role, and separation of duties (the publisher of a
//! version neither approves it nor makes a transition that needs approvals).
//! `governance` in the access configuration (specs/access.md, "Governance").

use crate::registry::state::ApprovalRef;
use ledger_client::event::{Kind, Metadata, Stage};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// `governance` in the access configuration (specs/access.md, "Governance").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// Metadata keys a publication of each kind must carry with a non-empty value.
    #[serde(default = "default_required_metadata")]
    pub required_metadata: BTreeMap<Kind, Vec<String>>,
    /// Transitions that need k-of-n approvals; at most one rule per target stage.
    #[serde(default)]
    pub approvals: Vec<ApprovalRule>,
    /// The publisher of a version may not approve it, nor make a transition that needs
    /// approvals (default on: four eyes means two people).
    #[serde(default = "yes")]
    pub separation_of_duties: bool,
}

/// `{"to": "approved", "required": 2, "role": "approver", "within_seconds": 604800}`: a
/// transition to `to` needs `required` approvals from distinct principals holding `role`,
/// each at most `within_seconds` old when the transition is made.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    pub to: Stage,
    pub required: u32,
    pub role: String,
    pub within_seconds: u64,
}

fn yes() -> bool {
    true
}

/// How the approvals of one version stand against a rule at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    /// (approver, entry index) of the approvals that count, oldest first.
    pub valid: Vec<(String, u64)>,
    /// (approver, entry index, why not) of the approvals for this stage that do not.
    pub ignored: Vec<(String, u64, &'static str)>,
}

impl ApprovalRule {
    /// Counts `approvals` (those recorded since the version's stage was set, as the
    /// catalog keeps them) at unix time `now`: the ones for this rule's stage, from
    /// distinct approvers, at most `within_seconds` old, and not by `publisher` when
    /// separation of duties applies (`Some`). The roles were checked when each approval
    /// was made (the only moment the approver's credential is at hand).
    pub fn tally(&self, approvals: &[ApprovalRef], publisher: Option<&str>, now: u64) -> Tally {
        let mut t = Tally::default();
        let mut seen = BTreeSet::new();
        for a in approvals.iter().filter(|a| a.to == self.to) {
            let who = a.at.actor.clone();
            // An approval stamped after `now` (clock steps) is fresh, not negative-aged.
            let age = now.saturating_sub(a.at.time);
            if publisher == Some(who.as_str()) {
                t.ignored.push((who, a.at.index, "by the publisher"));
            } else if age > self.within_seconds {
                t.ignored.push((who, a.at.index, "expired"));
            } else if !seen.insert(who.clone()) {
                // The catalog refuses a second approval by the same actor; kept as a
                // guard so that k approvals always mean k principals.
                t.ignored
                    .push((who, a.at.index, "a second approval by the same approver"));
            } else {
                t.valid.push((who, a.at.index));
            }
        }
        t
    }

    /// `Ok` when `tally` meets the quorum, else why not, naming what counts and what not.
    pub fn met(&self, tally: &Tally, subject: &str) -> Result<(), String> {
        if tally.valid.len() >= self.required as usize {
            return Ok(());
        }
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "none".to_string()
            } else {
                items.join(", ")
            }
        };
        let valid = list(
            tally
                .valid
                .iter()
                .map(|(who, i)| format!("{who} (entry {i})"))
                .collect(),
        );
        let mut message = format!(
            "moving {subject} to {} needs {} approval(s) from distinct principals with role \
             {:?}, each at most {} s old (governance.approvals); valid approvals: {} ({valid})",
            self.to,
            self.required,
            self.role,
            self.within_seconds,
            tally.valid.len()
        );
        if !tally.ignored.is_empty() {
            let ignored: Vec<String> = tally
                .ignored
                .iter()
                .map(|(who, i, why)| format!("{who} (entry {i}): {why}"))
                .collect();
            message.push_str(&format!("; not counted: {}", ignored.join(", ")));
        }
        Err(message)
    }
}

/// A dataset says where it comes from and under which licence it may be used.
fn default_required_metadata() -> BTreeMap<Kind, Vec<String>> {
    BTreeMap::from([(Kind::Dataset, vec!["license".into(), "source".into()])])
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        Self {
            required_metadata: default_required_metadata(),
            approvals: vec![],
            separation_of_duties: true,
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
        let mut stages = BTreeSet::new();
        for (i, rule) in self.approvals.iter().enumerate() {
            let at = format!("governance.approvals[{i}]");
            if !Stage::ALL.iter().any(|s| s.can_transition_to(rule.to)) {
                return Err(format!(
                    "{at}.to: no transition leads to {}, so none can need approvals",
                    rule.to
                ));
            }
            if !stages.insert(rule.to) {
                return Err(format!(
                    "{at}.to: a second rule for {}; give one rule per stage",
                    rule.to
                ));
            }
            if rule.required == 0 {
                return Err(format!(
                    "{at}.required: must be at least 1 (leave the rule out to need none)"
                ));
            }
            if !crate::access::principal::valid_name(&rule.role) {
                return Err(format!(
                    "{at}.role: {:?} is not a role name (1-128 characters of [a-z0-9._@:/#-])",
                    rule.role
                ));
            }
            if rule.within_seconds == 0 {
                return Err(format!(
                    "{at}.within_seconds: must be at least 1 (an approval must count for a while)"
                ));
            }
        }
        Ok(())
    }

    /// The approval rule for transitions to `to`, if any.
    pub fn rule(&self, to: Stage) -> Option<&ApprovalRule> {
        self.approvals.iter().find(|r| r.to == to)
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
    use crate::registry::state::At;

    fn rules(json: &str) -> Result<GovernanceConfig, String> {
        let g: GovernanceConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        g.check()?;
        Ok(g)
    }

    #[test]
    fn approval_rules_parse_strictly_and_impossible_rules_are_refused() {
        let g = rules(
            r#"{"approvals": [{"to": "approved", "required": 2, "role": "approver",
                               "within_seconds": 604800}]}"#,
        )
        .unwrap();
        assert_eq!(g.rule(Stage::Approved).unwrap().required, 2);
        assert!(g.rule(Stage::Released).is_none());
        assert!(g.separation_of_duties, "on unless turned off");
        assert!(
            !rules(r#"{"separation_of_duties": false}"#)
                .unwrap()
                .separation_of_duties
        );
        assert!(GovernanceConfig::default().approvals.is_empty());
        for (bad, want) in [
            (
                r#"{"approvals": [{"to": "approved", "required": 0, "role": "approver", "within_seconds": 1}]}"#,
                "approvals[0].required: must be at least 1",
            ),
            (
                r#"{"approvals": [{"to": "approved", "required": 1, "role": "Approver!", "within_seconds": 1}]}"#,
                "approvals[0].role: \"Approver!\" is not a role name",
            ),
            (
                r#"{"approvals": [{"to": "approved", "required": 1, "role": "", "within_seconds": 1}]}"#,
                "is not a role name",
            ),
            (
                r#"{"approvals": [{"to": "approved", "required": 1, "role": "a", "within_seconds": 0}]}"#,
                "approvals[0].within_seconds: must be at least 1",
            ),
            (
                r#"{"approvals": [{"to": "released", "required": 1, "role": "a", "within_seconds": 9},
                                  {"to": "released", "required": 2, "role": "b", "within_seconds": 9}]}"#,
                "approvals[1].to: a second rule for released",
            ),
            (
                r#"{"approvals": [{"to": "draft", "required": 1, "role": "a", "within_seconds": 9}]}"#,
                "approvals[0].to: no transition leads to draft",
            ),
            (
                r#"{"approvals": [{"to": "shipped", "required": 1, "role": "a", "within_seconds": 9}]}"#,
                "unknown variant `shipped`",
            ),
            (
                r#"{"approvals": [{"to": "approved", "required": -1, "role": "a", "within_seconds": 9}]}"#,
                "invalid value",
            ),
            (
                r#"{"approvals": [{"to": "approved", "required": 1, "role": "a", "within_seconds": 9, "quorum": 3}]}"#,
                "unknown field `quorum`",
            ),
            (
                r#"{"approvals": [{"to": "approved", "role": "a", "within_seconds": 9}]}"#,
                "missing field `required`",
            ),
            (r#"{"separation_of_duties": "yes"}"#, "invalid type"),
        ] {
            let e = rules(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    fn approval(actor: &str, to: Stage, index: u64, time: u64) -> ApprovalRef {
        ApprovalRef {
            to,
            comment: None,
            at: At {
                index,
                time,
                actor: actor.into(),
            },
        }
    }

    #[test]
    fn a_quorum_counts_distinct_fresh_approvals_of_that_stage_not_the_publishers() {
        let rule = ApprovalRule {
            to: Stage::Approved,
            required: 2,
            role: "approver".into(),
            within_seconds: 100,
        };
        let approvals = [
            approval("old", Stage::Approved, 1, 1_000),
            approval("paul", Stage::Approved, 2, 1_090),
            approval("anna", Stage::Revoked, 3, 1_095),
            approval("anna", Stage::Approved, 4, 1_100),
            approval("anna", Stage::Approved, 5, 1_101),
        ];
        let t = rule.tally(&approvals, Some("paul"), 1_150);
        assert_eq!(t.valid, vec![("anna".to_string(), 4)]);
        assert_eq!(
            t.ignored,
            vec![
                ("old".to_string(), 1, "expired"),
                ("paul".to_string(), 2, "by the publisher"),
                (
                    "anna".to_string(),
                    5,
                    "a second approval by the same approver"
                ),
            ]
        );
        let e = rule.met(&t, "m@1").unwrap_err();
        assert!(e.contains("needs 2 approval(s)"), "{e}");
        assert!(e.contains("valid approvals: 1 (anna (entry 4))"), "{e}");
        assert!(e.contains("old (entry 1): expired"), "{e}");
        // Exactly `within_seconds` old still counts; one second more does not.
        assert_eq!(rule.tally(&approvals[..1], None, 1_100).valid.len(), 1);
        assert!(rule.tally(&approvals[..1], None, 1_101).valid.is_empty());
        // Without separation of duties the publisher's approval counts: quorum met.
        let t = rule.tally(&approvals, None, 1_150);
        assert_eq!(t.valid.len(), 2);
        rule.met(&t, "m@1").unwrap();
        // No approvals at all says so.
        let e = rule.met(&rule.tally(&[], None, 0), "m@1").unwrap_err();
        assert!(e.contains("valid approvals: 0 (none)"), "{e}");
        // An approval stamped in the future (a clock step) is not negative-aged into expiry.
        assert_eq!(
            rule.tally(&[approval("x", Stage::Approved, 9, 5_000)], None, 10)
                .valid
                .len(),
            1
        );
    }

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
