//! Authorization as code: Cedar policies validated against the ledger's schema.
//!
//! Deny by default: a request is allowed only if some `permit` matches and no `forbid`
//! does. Roles are Cedar groups (`principal in Ledger::Role::"publisher"`), credential
//! attributes are tags on the principal, and the context carries time (for windows) and
//! whether the credential was multi-factor. The schema and policies live in files
//! (`ledger/access/` holds the defaults); a set that does not parse or does not validate
//! strictly is refused, at start and on reload, and the set in force stays in force.

use super::principal::{AuthMethod, Principal};
use anyhow::{anyhow, Context as _, Result};
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityUid, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use sha2::{Digest, Sha256};
use std::str::FromStr;

pub const DEFAULT_SCHEMA: &str = include_str!("../../access/schema.cedarschema");
pub const DEFAULT_POLICIES: &str = include_str!("../../access/policies.cedar");

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Append,
    Upload,
    Download,
    Publish,
    Annotate,
    Transition,
    Alias,
    Tombstone,
    Approve,
    Grant,
    Admin,
}

impl Action {
    /// Every action, in the schema's order.
    pub const ALL: [Action; 12] = [
        Action::Read,
        Action::Append,
        Action::Upload,
        Action::Download,
        Action::Publish,
        Action::Annotate,
        Action::Transition,
        Action::Alias,
        Action::Tombstone,
        Action::Approve,
        Action::Grant,
        Action::Admin,
    ];

    /// The action named `name` in policies (`Ledger::Action::"<name>"`).
    pub fn from_name(name: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Append => "append",
            Action::Upload => "upload",
            Action::Download => "download",
            Action::Publish => "publish",
            Action::Annotate => "annotate",
            Action::Transition => "transition",
            Action::Alias => "alias",
            Action::Tombstone => "tombstone",
            Action::Approve => "approve",
            Action::Grant => "grant",
            Action::Admin => "admin",
        }
    }
}

/// What it is done to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Log {
        name: String,
        origin: String,
    },
    Registry,
    Service,
    /// One artifact version, with the attributes policies may test (ABAC). Checked by the
    /// registry once the request's body names it, after the route-level check.
    Artifact(ArtifactAttrs),
}

/// The attributes of an artifact version a policy sees (`resource.kind` etc.).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArtifactAttrs {
    pub name: String,
    pub version: String,
    /// `model`, `dataset` or `other`.
    pub kind: String,
    /// The current stage (`draft` for a version being published).
    pub stage: String,
    /// The `sensitivity` metadata value, `""` when unset.
    pub sensitivity: String,
    /// Who published it (the principal doing it, when publishing).
    pub publisher: String,
    /// The stage a transition (or an approval) goes to; `""` for other actions.
    pub target_stage: String,
}

impl Resource {
    pub fn describe(&self) -> String {
        match self {
            Resource::Log { name, .. } => format!("Ledger::Log::{name:?}"),
            Resource::Registry => "Ledger::Registry::\"registry\"".into(),
            Resource::Service => "Ledger::Service::\"ledger\"".into(),
            Resource::Artifact(a) => format!("Ledger::Artifact::{:?}", artifact_id(a)),
        }
    }
}

/// The request's circumstances.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub now: i64,
    pub source_ip: String,
    /// Whether the principal holds a logged grant in force for the artifact version
    /// decided on (always false for other resources).
    pub grant: bool,
}

/// An authorization decision and the evidence an auditor needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Ids of the policies that decided (the permits for an allow, the forbids or nothing
    /// for a deny).
    pub policies: Vec<String>,
    /// Hex SHA-256 of the schema and policy text in force.
    pub policy_digest: String,
}

/// A validated policy set and its schema.
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    digest: String,
    authorizer: Authorizer,
    schema_text: String,
    policy_text: String,
    /// Decisions made in the current second (see [`PolicyEngine::authorize`]).
    recent: parking_lot::Mutex<Recent>,
}

/// The decisions of one second, by everything they were made from.
#[derive(Default)]
struct Recent {
    second: i64,
    verdicts: std::collections::HashMap<Vec<u8>, Verdict>,
}

/// Most decisions remembered within one second; beyond, the map starts over.
const MAX_RECENT: usize = 4096;

/// Every input of a decision, as bytes: the principal (id, method, roles, attributes,
/// second factor), the action, the resource with its attributes, and the context.
fn decision_key(
    p: &Principal,
    action: Action,
    resource: &Resource,
    ctx: &RequestContext,
) -> Vec<u8> {
    let mut k = Vec::with_capacity(256);
    let mut put = |s: &str| {
        k.extend_from_slice(&(s.len() as u32).to_be_bytes());
        k.extend_from_slice(s.as_bytes());
    };
    put(&p.id);
    match &p.method {
        AuthMethod::ApiToken { id } => {
            put("api_token");
            put(id)
        }
        AuthMethod::Session => put("session"),
        AuthMethod::Oidc { issuer } => {
            put("oidc");
            put(issuer)
        }
        AuthMethod::ClientCertificate { fingerprint } => {
            put("mtls");
            put(fingerprint)
        }
    }
    put(if p.mfa { "mfa" } else { "-" });
    put(&p.roles.len().to_string());
    for r in &p.roles {
        put(r);
    }
    put(&p.attributes.len().to_string());
    for (a, v) in &p.attributes {
        put(a);
        put(v);
    }
    put(action.name());
    match resource {
        Resource::Log { name, origin } => {
            put("log");
            put(name);
            put(origin)
        }
        Resource::Registry => put("registry"),
        Resource::Service => put("service"),
        Resource::Artifact(a) => {
            put("artifact");
            for f in [
                &a.name,
                &a.version,
                &a.kind,
                &a.stage,
                &a.sensitivity,
                &a.publisher,
                &a.target_stage,
            ] {
                put(f);
            }
        }
    }
    put(&ctx.source_ip);
    put(if ctx.grant { "grant" } else { "-" });
    k
}

/// Digest of a schema and policy text: what an auditor compares with a logged policy.
pub fn policy_digest(schema: &str, policies: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"ledger cedar policy v1\n");
    h.update((schema.len() as u64).to_be_bytes());
    h.update(schema.as_bytes());
    h.update((policies.len() as u64).to_be_bytes());
    h.update(policies.as_bytes());
    hex::encode(h.finalize())
}

/// `name@version`, the id of an artifact version entity.
pub fn artifact_id(a: &ArtifactAttrs) -> String {
    format!("{}@{}", a.name, a.version)
}

fn uid(ty: &str, id: &str) -> Result<EntityUid> {
    // Ids are quoted Cedar strings; escape what the grammar needs.
    let escaped: String = id.chars().flat_map(char::escape_default).collect();
    EntityUid::from_str(&format!("Ledger::{ty}::\"{escaped}\""))
        .map_err(|e| anyhow!("entity {ty}::{id:?}: {e}"))
}

impl PolicyEngine {
    /// Parses and strictly validates a policy set against a schema.
    pub fn new(schema_text: &str, policy_text: &str) -> Result<Self> {
        let (schema, _warnings) = Schema::from_cedarschema_str(schema_text)
            .map_err(|e| anyhow!("the Cedar schema does not parse: {e}"))?;
        let parsed = PolicySet::from_str(policy_text)
            .map_err(|e| anyhow!("the Cedar policies do not parse: {e}"))?;
        if parsed.templates().next().is_some() {
            return Err(anyhow!(
                "Cedar templates are not supported; write plain policies"
            ));
        }
        // Name each policy by its `@id` annotation, so that decisions (and the audit
        // records that quote them) cite the names authors wrote, not parse positions.
        let mut policies = PolicySet::new();
        for p in parsed.policies() {
            let id = p
                .annotation("id")
                .map(str::to_string)
                .unwrap_or_else(|| p.id().to_string());
            policies
                .add(p.new_id(PolicyId::new(&id)))
                .map_err(|e| anyhow!("policy {id:?}: {e}"))?;
        }
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
            return Err(anyhow!(
                "the Cedar policies do not validate against the schema: {}",
                errors.join("; ")
            ));
        }
        Ok(Self {
            schema,
            policies,
            digest: policy_digest(schema_text, policy_text),
            authorizer: Authorizer::new(),
            schema_text: schema_text.to_string(),
            policy_text: policy_text.to_string(),
            recent: Default::default(),
        })
    }

    /// The shipped default schema and policies.
    pub fn default_set() -> Result<Self> {
        Self::new(DEFAULT_SCHEMA, DEFAULT_POLICIES)
    }

    /// Reads a schema and a policy file.
    pub fn from_files(schema: &std::path::Path, policies: &std::path::Path) -> Result<Self> {
        let s = std::fs::read_to_string(schema)
            .with_context(|| format!("reading Cedar schema {}", schema.display()))?;
        let p = std::fs::read_to_string(policies)
            .with_context(|| format!("reading Cedar policies {}", policies.display()))?;
        Self::new(&s, &p)
            .with_context(|| format!("{} with {}", policies.display(), schema.display()))
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The schema and policy texts the digest covers (logged when put in force).
    pub fn texts(&self) -> (&str, &str) {
        (&self.schema_text, &self.policy_text)
    }

    /// Decides whether `p` may do `action` on `resource`.
    ///
    /// A decision is a pure function of the policy set and its inputs, and its finest
    /// input in time is the second (`context.now`). So a decision made in the current
    /// second with the same inputs is answered from memory: Cedar costs about 24 µs per
    /// evaluation here, and a busy client asks the same question thousands of times a
    /// second. A new policy set is a new engine with an empty memory.
    pub fn authorize(
        &self,
        p: &Principal,
        action: Action,
        resource: &Resource,
        ctx: &RequestContext,
    ) -> Result<Verdict> {
        let key = decision_key(p, action, resource, ctx);
        {
            let recent = self.recent.lock();
            if recent.second == ctx.now {
                if let Some(v) = recent.verdicts.get(&key) {
                    return Ok(v.clone());
                }
            }
        }
        let verdict = self.evaluate(p, action, resource, ctx)?;
        let mut recent = self.recent.lock();
        if recent.second != ctx.now || recent.verdicts.len() >= MAX_RECENT {
            recent.second = ctx.now;
            recent.verdicts.clear();
        }
        recent.verdicts.insert(key, verdict.clone());
        Ok(verdict)
    }

    /// [`PolicyEngine::authorize`] without the memory: one Cedar evaluation.
    fn evaluate(
        &self,
        p: &Principal,
        action: Action,
        resource: &Resource,
        ctx: &RequestContext,
    ) -> Result<Verdict> {
        let principal_uid = uid("User", &p.id)?;
        let role_uids = p
            .roles
            .iter()
            .map(|r| uid("Role", r))
            .collect::<Result<Vec<_>>>()?;
        let method = match p.method {
            AuthMethod::ApiToken { .. } => "api_token",
            AuthMethod::Session => "session",
            AuthMethod::Oidc { .. } => "oidc",
            AuthMethod::ClientCertificate { .. } => "mtls",
        };
        let user = Entity::new_with_tags(
            principal_uid.clone(),
            [
                (
                    "method".to_string(),
                    RestrictedExpression::new_string(method.into()),
                ),
                ("mfa".to_string(), RestrictedExpression::new_bool(p.mfa)),
            ],
            role_uids.iter().cloned(),
            p.attributes
                .iter()
                .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone()))),
        )
        .map_err(|e| anyhow!("principal entity: {e}"))?;
        let (resource_uid, resource_entity) = match resource {
            Resource::Log { name, origin } => {
                let u = uid("Log", name)?;
                let e = Entity::new(
                    u.clone(),
                    [(
                        "origin".to_string(),
                        RestrictedExpression::new_string(origin.clone()),
                    )]
                    .into_iter()
                    .collect(),
                    Default::default(),
                )
                .map_err(|e| anyhow!("resource entity: {e}"))?;
                (u, e)
            }
            Resource::Registry => {
                let u = uid("Registry", "registry")?;
                (u.clone(), Entity::with_uid(u))
            }
            Resource::Service => {
                let u = uid("Service", "ledger")?;
                (u.clone(), Entity::with_uid(u))
            }
            Resource::Artifact(a) => {
                let u = uid("Artifact", &artifact_id(a))?;
                let s = |v: &str| RestrictedExpression::new_string(v.to_string());
                let e = Entity::new(
                    u.clone(),
                    [
                        ("name".to_string(), s(&a.name)),
                        ("version".to_string(), s(&a.version)),
                        ("kind".to_string(), s(&a.kind)),
                        ("stage".to_string(), s(&a.stage)),
                        ("sensitivity".to_string(), s(&a.sensitivity)),
                        ("publisher".to_string(), s(&a.publisher)),
                        ("target_stage".to_string(), s(&a.target_stage)),
                    ]
                    .into_iter()
                    .collect(),
                    Default::default(),
                )
                .map_err(|e| anyhow!("resource entity: {e}"))?;
                (u, e)
            }
        };
        let mut entities = vec![user, resource_entity];
        entities.extend(role_uids.into_iter().map(Entity::with_uid));
        let entities = Entities::from_entities(entities, Some(&self.schema))
            .map_err(|e| anyhow!("entities: {e}"))?;
        let secs = ctx.now.max(0);
        let days = secs / 86400;
        // 1970-01-01 was a Thursday (ISO weekday 4).
        let weekday = (days + 3) % 7 + 1;
        let context = Context::from_pairs([
            ("now".to_string(), RestrictedExpression::new_long(secs)),
            (
                "hour_utc".to_string(),
                RestrictedExpression::new_long((secs % 86400) / 3600),
            ),
            (
                "weekday".to_string(),
                RestrictedExpression::new_long(weekday),
            ),
            (
                "source_ip".to_string(),
                RestrictedExpression::new_string(ctx.source_ip.clone()),
            ),
            ("mfa".to_string(), RestrictedExpression::new_bool(p.mfa)),
            (
                "grant".to_string(),
                RestrictedExpression::new_bool(ctx.grant),
            ),
        ])
        .map_err(|e| anyhow!("context: {e}"))?;
        let action_uid = EntityUid::from_str(&format!("Ledger::Action::\"{}\"", action.name()))
            .map_err(|e| anyhow!("action: {e}"))?;
        let request = Request::new(
            principal_uid,
            action_uid,
            resource_uid,
            context,
            Some(&self.schema),
        )
        .map_err(|e| anyhow!("request does not fit the schema: {e}"))?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &entities);
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        policies.sort();
        Ok(Verdict {
            allowed: response.decision() == Decision::Allow,
            policies,
            policy_digest: self.digest.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn user(roles: &[&str], mfa: bool) -> Principal {
        Principal {
            id: "alice".into(),
            method: AuthMethod::Session,
            roles: roles.iter().map(|r| r.to_string()).collect::<BTreeSet<_>>(),
            attributes: BTreeMap::from([("repository".into(), "org/models".into())]),
            mfa,
        }
    }

    fn ctx() -> RequestContext {
        RequestContext {
            now: 1_790_000_000,
            source_ip: "127.0.0.1".into(),
            grant: false,
        }
    }

    #[test]
    fn the_default_policies_allow_each_role_its_actions_and_deny_the_rest() {
        let e = PolicyEngine::default_set().unwrap();
        let log = Resource::Log {
            name: "artifacts".into(),
            origin: "localhost/artifacts".into(),
        };
        let ok = |roles: &[&str], a: Action, r: &Resource, mfa: bool| {
            e.authorize(&user(roles, mfa), a, r, &ctx())
                .unwrap()
                .allowed
        };
        assert!(ok(&["reader"], Action::Read, &log, false));
        assert!(!ok(&["reader"], Action::Append, &log, false));
        assert!(!ok(
            &["reader"],
            Action::Publish,
            &Resource::Registry,
            false
        ));
        assert!(ok(
            &["publisher"],
            Action::Publish,
            &Resource::Registry,
            false
        ));
        assert!(!ok(
            &["publisher"],
            Action::Transition,
            &Resource::Registry,
            false
        ));
        assert!(ok(
            &["approver"],
            Action::Transition,
            &Resource::Registry,
            false
        ));
        assert!(ok(
            &["approver"],
            Action::Approve,
            &Resource::Registry,
            false
        ));
        assert!(!ok(
            &["publisher"],
            Action::Approve,
            &Resource::Registry,
            false
        ));
        assert!(!ok(
            &["reader"],
            Action::Approve,
            &Resource::Registry,
            false
        ));
        assert!(!ok(
            &["approver"],
            Action::Upload,
            &Resource::Registry,
            false
        ));
        assert!(ok(&["admin"], Action::Admin, &Resource::Service, false));
        assert!(!ok(
            &["admin"],
            Action::Tombstone,
            &Resource::Registry,
            false
        ));
        assert!(ok(&["admin"], Action::Tombstone, &Resource::Registry, true));
        assert!(!ok(&[], Action::Read, &log, true), "deny by default");
        let v = e
            .authorize(
                &user(&["publisher"], false),
                Action::Publish,
                &Resource::Registry,
                &ctx(),
            )
            .unwrap();
        assert_eq!(v.policies, vec!["publishers-publish".to_string()]);
        assert_eq!(
            v.policy_digest,
            policy_digest(DEFAULT_SCHEMA, DEFAULT_POLICIES)
        );
    }

    #[test]
    fn attribute_and_time_window_policies_work() {
        let policies = r#"
            @id("ci-main-only")
            permit (principal, action == Ledger::Action::"publish", resource)
            when { principal.hasTag("repository") && principal.getTag("repository") == "org/models"
                   && context.hour_utc >= 6 && context.hour_utc < 20 };
        "#;
        let e = PolicyEngine::new(DEFAULT_SCHEMA, policies).unwrap();
        let mut c = ctx();
        c.now = 1_790_000_000 - (1_790_000_000 % 86400) + 12 * 3600; // noon UTC
        assert!(
            e.authorize(&user(&[], false), Action::Publish, &Resource::Registry, &c)
                .unwrap()
                .allowed
        );
        c.now -= 10 * 3600; // 02:00 UTC
        assert!(
            !e.authorize(&user(&[], false), Action::Publish, &Resource::Registry, &c)
                .unwrap()
                .allowed
        );
        let mut other = user(&[], false);
        other
            .attributes
            .insert("repository".into(), "evil/fork".into());
        c.now += 10 * 3600;
        assert!(
            !e.authorize(&other, Action::Publish, &Resource::Registry, &c)
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn policies_that_do_not_parse_or_validate_are_refused_with_the_reason() {
        for (bad, want) in [
            ("permit (principal, action, resource", "parse"),
            (
                r#"permit (principal, action == Ledger::Action::"fly", resource);"#,
                "validate",
            ),
            (
                r#"permit (principal, action, resource) when { principal.age > 3 };"#,
                "validate",
            ),
        ] {
            let e = PolicyEngine::new(DEFAULT_SCHEMA, bad)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert!(PolicyEngine::new("namespace {", DEFAULT_POLICIES).is_err());
    }

    #[test]
    fn client_certificates_are_the_mtls_method() {
        // A policy can demand that appends come over mutual TLS, whatever the roles.
        let policies = r#"
            @id("appends-over-mtls")
            permit (principal in Ledger::Role::"publisher", action == Ledger::Action::"append", resource)
            when { principal.method == "mtls" };
        "#;
        let e = PolicyEngine::new(DEFAULT_SCHEMA, policies).unwrap();
        let log = Resource::Log {
            name: "artifacts".into(),
            origin: "localhost/artifacts".into(),
        };
        let mut p = user(&["publisher"], false);
        assert!(
            !e.authorize(&p, Action::Append, &log, &ctx())
                .unwrap()
                .allowed,
            "a session is not mtls"
        );
        p.method = AuthMethod::ClientCertificate {
            fingerprint: "00".repeat(32),
        };
        let v = e.authorize(&p, Action::Append, &log, &ctx()).unwrap();
        assert!(v.allowed);
        assert_eq!(v.policies, vec!["appends-over-mtls".to_string()]);
    }

    #[test]
    fn hostile_principal_names_cannot_escape_the_entity_id() {
        let e = PolicyEngine::default_set().unwrap();
        let mut p = user(&["reader"], false);
        p.id = "x\" || true || \"".into();
        let v = e
            .authorize(&p, Action::Admin, &Resource::Service, &ctx())
            .unwrap();
        assert!(!v.allowed);
    }

    #[test]
    fn time_windows_hold_to_the_second_and_hours_and_weekdays_are_utc() {
        // Reads allowed from 2026-11-26T09:00:00Z (a Thursday) for exactly one hour, and
        // on weekdays between 08:00 and 18:00 UTC.
        let start: i64 = 1_795_683_600;
        let policies = format!(
            r#"@id("window") permit (principal, action == Ledger::Action::"read", resource)
               when {{ context.now >= {start} && context.now < {end} }};
               @id("office-hours") permit (principal, action == Ledger::Action::"download", resource)
               when {{ context.weekday <= 5 && context.hour_utc >= 8 && context.hour_utc < 18 }};"#,
            end = start + 3600
        );
        let e = PolicyEngine::new(DEFAULT_SCHEMA, &policies).unwrap();
        let at = |now: i64, action: Action| {
            let ctx = RequestContext {
                now,
                source_ip: "127.0.0.1".into(),
                grant: false,
            };
            e.authorize(&user(&[], false), action, &Resource::Registry, &ctx)
                .unwrap()
                .allowed
        };
        assert!(!at(start - 1, Action::Read), "a second early");
        assert!(at(start, Action::Read), "the first second");
        assert!(at(start + 3599, Action::Read), "the last second");
        assert!(!at(start + 3600, Action::Read), "the end is exclusive");
        // 2026-11-26 is a Thursday: 07:59:59 no, 08:00 yes, 17:59:59 yes, 18:00 no.
        let day = start - 9 * 3600;
        assert!(!at(day + 8 * 3600 - 1, Action::Download));
        assert!(at(day + 8 * 3600, Action::Download));
        assert!(at(day + 18 * 3600 - 1, Action::Download));
        assert!(!at(day + 18 * 3600, Action::Download));
        // Saturday 2026-11-28 at noon: no.
        assert!(!at(day + 2 * 86400 + 12 * 3600, Action::Download));
        // Friday 2026-11-27 at noon: yes; Sunday 2026-11-29 at noon: no.
        assert!(at(day + 86400 + 12 * 3600, Action::Download));
        assert!(!at(day + 3 * 86400 + 12 * 3600, Action::Download));
    }

    fn artifact(sensitivity: &str) -> Resource {
        Resource::Artifact(ArtifactAttrs {
            name: "models/m".into(),
            version: "1".into(),
            kind: "model".into(),
            stage: "released".into(),
            sensitivity: sensitivity.into(),
            publisher: "paul".into(),
            target_stage: String::new(),
        })
    }

    #[test]
    fn restricted_bytes_are_downloaded_only_under_a_grant_whatever_the_role() {
        let e = PolicyEngine::default_set().unwrap();
        let download = |roles: &[&str], sensitivity: &str, grant: bool| {
            let c = RequestContext { grant, ..ctx() };
            e.authorize(
                &user(roles, true),
                Action::Download,
                &artifact(sensitivity),
                &c,
            )
            .unwrap()
        };
        for roles in [&["reader"][..], &["publisher"], &["admin"]] {
            assert!(download(roles, "", false).allowed, "{roles:?}");
            let v = download(roles, "restricted", false);
            assert!(!v.allowed, "{roles:?}");
            assert_eq!(v.policies, ["restricted-downloads-need-a-grant"]);
            assert!(download(roles, "restricted", true).allowed, "{roles:?}");
        }
        // A grant adds nothing the roles do not give: an approver has no download right.
        assert!(!download(&["approver"], "restricted", true).allowed);
    }

    #[test]
    fn confidential_bytes_are_downloaded_in_working_hours_or_under_a_grant() {
        let e = PolicyEngine::default_set().unwrap();
        // 2026-11-26 (Thursday) 00:00:00 UTC.
        let thursday: i64 = 1_795_651_200;
        let at = |now: i64, grant: bool| {
            let c = RequestContext {
                now,
                source_ip: "127.0.0.1".into(),
                grant,
            };
            e.authorize(
                &user(&["reader"], false),
                Action::Download,
                &artifact("confidential"),
                &c,
            )
            .unwrap()
            .allowed
        };
        assert!(!at(thursday + 7 * 3600 - 1, false), "06:59:59");
        assert!(at(thursday + 7 * 3600, false), "07:00");
        assert!(at(thursday + 19 * 3600 - 1, false), "18:59:59");
        assert!(!at(thursday + 19 * 3600, false), "19:00");
        assert!(at(thursday + 19 * 3600, true), "19:00 under a grant");
        let saturday_noon = thursday + 2 * 86400 + 12 * 3600;
        assert!(!at(saturday_noon, false));
        assert!(at(saturday_noon, true));
    }

    #[test]
    fn granting_restricted_access_needs_a_second_factor() {
        let e = PolicyEngine::default_set().unwrap();
        let grant = |roles: &[&str], mfa: bool, sensitivity: &str| {
            e.authorize(
                &user(roles, mfa),
                Action::Grant,
                &artifact(sensitivity),
                &ctx(),
            )
            .unwrap()
            .allowed
        };
        assert!(grant(&["approver"], true, "restricted"));
        assert!(!grant(&["approver"], false, "restricted"));
        assert!(grant(&["approver"], false, ""));
        assert!(!grant(&["publisher"], true, "restricted"));
        assert!(!grant(&["reader"], true, ""));
        assert!(Action::ALL
            .iter()
            .all(|a| Action::from_name(a.name()) == Some(*a)));
    }

    #[test]
    fn remembered_decisions_match_fresh_ones_for_every_input_that_differs() {
        let e = PolicyEngine::default_set().unwrap();
        let mut inputs = vec![];
        for roles in [&["reader"][..], &["admin"], &["approver"], &[]] {
            for mfa in [false, true] {
                for action in Action::ALL {
                    for r in [
                        Resource::Registry,
                        Resource::Service,
                        artifact("restricted"),
                        artifact(""),
                    ] {
                        for grant in [false, true] {
                            inputs.push((user(roles, mfa), action, r.clone(), grant));
                        }
                    }
                }
            }
        }
        // Twice in the same second: the second pass is answered from memory and must say
        // exactly what a fresh evaluation says.
        for _ in 0..2 {
            for (p, a, r, grant) in &inputs {
                let c = RequestContext {
                    grant: *grant,
                    ..ctx()
                };
                // (Some pairs do not fit the schema: both refuse them alike.)
                assert_eq!(
                    e.authorize(p, *a, r, &c).ok(),
                    e.evaluate(p, *a, r, &c).ok(),
                    "{} {:?} {r:?} grant={grant}",
                    p.id,
                    a
                );
            }
        }
        // The second matters: a window closing at a second boundary is seen at once.
        let policies = r#"@id("until") permit (principal, action, resource) when { context.now < 1790000001 };"#;
        let e = PolicyEngine::new(DEFAULT_SCHEMA, policies).unwrap();
        let at = |now| {
            let c = RequestContext { now, ..ctx() };
            e.authorize(&user(&[], false), Action::Read, &Resource::Registry, &c)
                .unwrap()
                .allowed
        };
        assert!(at(1_790_000_000));
        assert!(at(1_790_000_000));
        assert!(!at(1_790_000_001));
    }
}
