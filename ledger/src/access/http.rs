//! The access layer in front of every route (specs/access.md): authenticate the bearer
//! credential, or else the verified client certificate of the connection (401 without a
//! valid one), map the route to a Cedar action and resource,
//! authorize (403 when denied), and hand the principal to the handler. Both refusals are
//! decided before the route looks anything up, so neither says whether the thing exists.
//!
//! Also the `/access/v1` endpoints: tokens (admin), sessions, who-am-I, policy reload.

use super::audit::{now_ms, AuditLog, DecisionRecord, Outcome, Queued, RECORD_VERSION};
use super::authz::{Action, ArtifactAttrs, RequestContext, Resource, Verdict};
use super::config::Access;
use super::principal::{AuthMethod, Principal};
use super::tokens::now;
use crate::api_error::ApiError;
use crate::log::LogError;
use crate::tls::Peer;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// The access layer: credentials and policy, the hosted logs (name → origin) and the
/// access audit log every decision goes to.
pub struct Guard {
    pub access: Arc<Access>,
    pub logs: BTreeMap<String, String>,
    pub audit: Arc<AuditLog>,
    /// Serializes policy reloads (see `reload`).
    pub reloading: tokio::sync::Mutex<()>,
    /// Whether connections can carry verified client certificates (`--tls-client-ca`);
    /// only for what a 401 tells the client it could have presented.
    pub client_certs: bool,
}

/// What one request was decided, for its audit record.
struct Decided<'a> {
    principal: Option<&'a str>,
    action: Option<Action>,
    resource: Option<&'a Resource>,
    outcome: Outcome,
    policies: &'a [String],
    reason: Option<&'a str>,
}

impl Guard {
    /// Queues the audit record of one decision. When the audit pool refuses it, the
    /// caller refuses the request (503, [`audit_unavailable`]): nothing is answered
    /// without its record.
    fn record(
        &self,
        req: &Request,
        peer: SocketAddr,
        d: Decided<'_>,
        policy_digest: &str,
    ) -> Result<Queued, LogError> {
        self.record_at(
            req.method().as_str(),
            req.uri().path(),
            peer,
            d,
            policy_digest,
        )
    }

    fn record_at(
        &self,
        method: &str,
        path: &str,
        peer: SocketAddr,
        d: Decided<'_>,
        policy_digest: &str,
    ) -> Result<Queued, LogError> {
        let record = DecisionRecord {
            kind: "decision",
            v: RECORD_VERSION,
            id: self.audit.next_id(),
            time_ms: now_ms(),
            principal: d.principal,
            method,
            path,
            action: d.action.map(Action::name),
            resource: d.resource.map(Resource::describe),
            decision: d.outcome,
            policies: d.policies,
            policy_digest,
            source: peer.to_string(),
            reason: d.reason,
        };
        self.audit.append(&record)
    }
}

/// A request the access layer let through: who made it, from where, and the means to
/// check what its body turns out to name (an artifact version) against the policy.
#[derive(Clone)]
pub struct Authorized {
    pub principal: Principal,
    guard: Arc<Guard>,
    peer: SocketAddr,
    method: String,
    path: String,
}

/// Why an artifact-level check refused.
#[derive(Debug)]
pub enum ArtifactRefusal {
    /// The policy denies it (403); the message names principal, action and artifact.
    Denied(String),
    /// The audit log cannot take the record now (503).
    AuditUnavailable(LogError),
}

impl Authorized {
    /// What the policy in force would decide, without recording anything (dry runs:
    /// `POST /registry/v1/check`, whose own request is recorded by the guard).
    pub fn would_allow(&self, action: Action, resource: &Resource) -> anyhow::Result<Verdict> {
        let ctx = self.context(resource);
        self.guard
            .access
            .policy()
            .authorize(&self.principal, action, resource, &ctx)
    }

    /// The request's context for a decision on `resource`: whether the principal holds a
    /// grant in force is asked only of artifact versions.
    fn context(&self, resource: &Resource) -> RequestContext {
        let now = now();
        let grant = match resource {
            Resource::Artifact(a) => self.guard.access.grants.holds(
                &self.principal.id,
                &super::authz::artifact_id(a),
                now,
            ),
            _ => false,
        };
        RequestContext {
            now: now as i64,
            source_ip: self.peer.ip().to_string(),
            grant,
        }
    }

    /// The access layer this request passed (grants, the audit log).
    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    /// Digest of the policy set in force.
    pub fn policy_digest(&self) -> String {
        self.guard.access.policy().digest().to_string()
    }

    /// The governance rules in force.
    pub fn governance(&self) -> &super::governance::GovernanceConfig {
        self.guard.access.governance()
    }

    /// Records that a governance rule (not the Cedar policy) refused `action` on an
    /// artifact version: a `deny` decision whose `policies` name the rule
    /// (`governance.approvals`, `governance.separation_of_duties`) and whose `reason` says
    /// why, so the audit log shows every refusal, not only the policy's. Queued like other
    /// denials, not waited for.
    pub fn record_governance_denial(
        &self,
        action: Action,
        artifact: ArtifactAttrs,
        rule: &str,
        reason: &str,
    ) -> Result<(), LogError> {
        let policy = self.guard.access.policy();
        let resource = Resource::Artifact(artifact);
        let d = Decided {
            principal: Some(&self.principal.id),
            action: Some(action),
            resource: Some(&resource),
            outcome: Outcome::Deny,
            policies: &[rule.to_string()],
            reason: Some(reason),
        };
        self.guard
            .record_at(&self.method, &self.path, self.peer, d, policy.digest())
            .map(drop)
    }

    /// Decides `action` on one artifact version and queues the audit record of the
    /// decision. Synchronous, so the registry can decide under the artifact's lock, on
    /// the state the write will build on. An allow returns the queued record: the caller
    /// awaits its durability before acknowledging the write.
    pub fn decide_artifact(
        &self,
        action: Action,
        artifact: ArtifactAttrs,
    ) -> Result<Queued, ArtifactRefusal> {
        self.decide_any(action, vec![artifact])
    }

    /// Decides `action` on whichever of `candidates` (versions that share one blob) the
    /// policy allows first, and queues one audit record: the allow on that version, or
    /// the deny on the first. Bytes published under several versions are the same bytes,
    /// so a right to any of them is a right to them.
    pub fn decide_any(
        &self,
        action: Action,
        candidates: Vec<ArtifactAttrs>,
    ) -> Result<Queued, ArtifactRefusal> {
        let policy = self.guard.access.policy();
        let digest = policy.digest();
        let mut first = None;
        let mut chosen = None;
        for artifact in candidates {
            let resource = Resource::Artifact(artifact);
            let ctx = self.context(&resource);
            let verdict = policy.authorize(&self.principal, action, &resource, &ctx);
            let allowed = matches!(&verdict, Ok(v) if v.allowed);
            if allowed {
                chosen = Some((resource, verdict));
                break;
            }
            if first.is_none() {
                first = Some((resource, verdict));
            }
        }
        let Some((resource, verdict)) = chosen.or(first) else {
            return Err(ArtifactRefusal::Denied(format!(
                "{} may not {} nothing",
                self.principal.id,
                action.name()
            )));
        };
        let (allowed, policies, error) = match &verdict {
            Ok(v) => (v.allowed, v.policies.as_slice(), None),
            Err(e) => (false, &[][..], Some(format!("{e:#}"))),
        };
        let d = Decided {
            principal: Some(&self.principal.id),
            action: Some(action),
            resource: Some(&resource),
            outcome: if allowed {
                Outcome::Allow
            } else {
                Outcome::Deny
            },
            policies,
            reason: error.as_deref(),
        };
        let queued = self
            .guard
            .record_at(&self.method, &self.path, self.peer, d, digest)
            .map_err(ArtifactRefusal::AuditUnavailable)?;
        if allowed {
            Ok(queued)
        } else {
            // Name the forbids that decided, so "needs a grant" is not a guess.
            let because = if policies.is_empty() {
                String::new()
            } else {
                format!(" (forbidden by {})", policies.join(", "))
            };
            Err(ArtifactRefusal::Denied(format!(
                "{} may not {} {} under policy {}{because}",
                self.principal.id,
                action.name(),
                resource.describe(),
                &digest[..16]
            )))
        }
    }
}

/// 429 Too Many Requests with Retry-After (RFC 6585 §4).
fn too_many(message: String, wait: std::time::Duration) -> Response {
    let mut r =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
    let secs = super::limits::retry_after_secs(wait);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn audit_unavailable(e: LogError) -> Response {
    tracing::warn!(error = %e, "access audit log refused a record");
    let mut r = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        format!("the access audit log cannot record this request now: {e}"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Routes anyone may call: liveness and readiness carry no data.
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// The action and resource a request asks for. Decided from the method and path alone.
fn classify(method: &Method, path: &str, logs: &BTreeMap<String, String>) -> (Action, Resource) {
    let reading = method == Method::GET || method == Method::HEAD;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["metrics"] => (Action::Admin, Resource::Service),
        ["logs"] | ["tsa"] => (Action::Read, Resource::Service),
        ["access", "v1", "tokens", ..] | ["access", "v1", "policy", ..] => {
            (Action::Admin, Resource::Service)
        }
        // Listing grants is reading what the audit log already says; making and revoking
        // one is `grant`, checked again on the artifact when one is made.
        ["access", "v1", "grants", ..] if reading => (Action::Read, Resource::Service),
        ["access", "v1", "grants", ..] => (Action::Grant, Resource::Registry),
        ["v2", ..] if reading => (Action::Download, Resource::Registry),
        ["v2", ..] => (Action::Upload, Resource::Registry),
        ["registry", "v1", rest @ ..] if !reading => {
            let action = match rest.first().copied() {
                Some("publish") => Action::Publish,
                Some("lifecycle") => Action::Transition,
                Some("approve") => Action::Approve,
                Some("alias") => Action::Alias,
                Some("tombstone") => Action::Tombstone,
                // metadata, lineage, attestation, and anything unknown (the router 404s)
                _ => Action::Annotate,
            };
            (action, Resource::Registry)
        }
        ["registry", ..] => (Action::Read, Resource::Registry),
        [log, rest @ ..] => {
            let origin = logs.get(*log).cloned().unwrap_or_default();
            let resource = Resource::Log {
                name: (*log).to_string(),
                origin,
            };
            let appending = !reading && matches!(rest, ["add"] | ["add-batch"]);
            (
                if appending {
                    Action::Append
                } else {
                    Action::Read
                },
                resource,
            )
        }
        [] => (Action::Read, Resource::Service),
    }
}

fn unauthorized(message: impl Into<String>) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message).into_response();
    // RFC 6750 §3: a 401 names the scheme.
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ledger\""),
    );
    r
}

/// The bearer credential of a request (RFC 6750 §2.1), if any.
fn bearer(req: &Request) -> Result<Option<&str>, &'static str> {
    let Some(v) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| "the Authorization header is not ASCII")?;
    let (scheme, cred) = v
        .split_once(' ')
        .ok_or("the Authorization header has no scheme")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("only Bearer credentials are accepted");
    }
    let cred = cred.trim();
    if cred.is_empty() || cred.len() > 16 * 1024 {
        return Err("the bearer credential is empty or too long");
    }
    Ok(Some(cred))
}

/// The middleware: authenticate, authorize, record the decision, pass the principal on.
pub async fn guard(
    State(g): State<Arc<Guard>>,
    ConnectInfo(conn): ConnectInfo<Peer>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = conn.addr;
    let path = req.uri().path().to_string();
    if public(&path) {
        return next.run(req).await;
    }
    let policy = g.access.policy();
    let digest = policy.digest();
    let refuse_unauthenticated = |req: &Request, reason: &str| {
        let limited = g
            .access
            .unauthenticated_limits
            .take(&peer.ip().to_string(), std::time::Instant::now());
        if let Err(wait) = limited {
            let d = Decided {
                principal: None,
                action: None,
                resource: None,
                outcome: Outcome::RateLimited,
                policies: &[],
                reason: Some(reason),
            };
            return match g.record(req, peer, d, digest) {
                Ok(_queued) => too_many(
                    format!(
                        "too many requests without a valid credential from {}",
                        peer.ip()
                    ),
                    wait,
                ),
                Err(e) => audit_unavailable(e),
            };
        }
        let d = Decided {
            principal: None,
            action: None,
            resource: None,
            outcome: Outcome::Unauthenticated,
            policies: &[],
            reason: Some(reason),
        };
        match g.record(req, peer, d, digest) {
            Ok(_queued) => unauthorized(reason),
            Err(e) => audit_unavailable(e),
        }
    };
    // A Bearer credential, when present, decides alone: a request that names a principal
    // explicitly is about that principal, whatever certificate its connection carries (a
    // CI runner's certificate must not silently stand in for a token that failed). Only
    // without one does the connection's verified client certificate authenticate.
    let principal = match bearer(&req) {
        Ok(Some(cred)) => match g.access.authenticate(cred) {
            Ok(p) => p,
            Err(e) => return refuse_unauthenticated(&req, &e),
        },
        Ok(None) => match &conn.client_cert {
            Some(der) => match g.access.authenticate_certificate(der) {
                Ok(p) => p,
                Err(e) => return refuse_unauthenticated(&req, &e),
            },
            None if g.client_certs => return refuse_unauthenticated(
                &req,
                "this endpoint needs a Bearer credential (API token, session or identity token) or a client certificate",
            ),
            None => return refuse_unauthenticated(
                &req,
                "this endpoint needs a Bearer credential (API token, session or identity token)",
            ),
        },
        Err(e) => return refuse_unauthenticated(&req, e),
    };
    if let Err(wait) = g
        .access
        .principal_limits
        .take(&principal.id, std::time::Instant::now())
    {
        let d = Decided {
            principal: Some(&principal.id),
            action: None,
            resource: None,
            outcome: Outcome::RateLimited,
            policies: &[],
            reason: None,
        };
        return match g.record(&req, peer, d, digest) {
            Ok(_queued) => too_many(format!("{} is over its request rate", principal.id), wait),
            Err(e) => audit_unavailable(e),
        };
    }
    // Who-am-I and sessions only need a valid credential: they are about the caller.
    // So does a dry run of a registry write: it evaluates the caller's own rights.
    let self_service = matches!(
        path.as_str(),
        "/access/v1/whoami" | "/access/v1/session" | "/registry/v1/check"
    );
    let (action, resource) = classify(req.method(), &path, &g.logs);
    let verdict = if self_service {
        Ok(Verdict {
            allowed: true,
            policies: vec![],
            policy_digest: digest.to_string(),
        })
    } else {
        // Route-level resources are never artifact versions: no grant applies.
        let ctx = RequestContext {
            now: now() as i64,
            source_ip: peer.ip().to_string(),
            grant: false,
        };
        policy.authorize(&principal, action, &resource, &ctx)
    };
    let (allowed, policies, error) = match &verdict {
        Ok(v) => (v.allowed, v.policies.as_slice(), None),
        Err(e) => {
            tracing::error!(error = %e, "authorization failed to evaluate");
            (false, &[][..], Some(format!("{e:#}")))
        }
    };
    let d = Decided {
        principal: Some(&principal.id),
        action: (!self_service).then_some(action),
        resource: (!self_service).then_some(&resource),
        outcome: if allowed {
            Outcome::Allow
        } else {
            Outcome::Deny
        },
        policies,
        reason: error.as_deref(),
    };
    let queued = match g.record(&req, peer, d, digest) {
        Ok(q) => q,
        Err(e) => return audit_unavailable(e),
    };
    if !allowed {
        let message = match error {
            Some(_) => "the request could not be authorized (deny by default)".to_string(),
            None => format!(
                "{} may not {} {} under policy {}",
                principal.id,
                action.name(),
                resource.describe(),
                &digest[..16]
            ),
        };
        return ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response();
    }
    // A request that may change something runs only once its record is durable, so no
    // acknowledged write lacks its audit record.
    let reading = req.method() == Method::GET || req.method() == Method::HEAD;
    if !reading {
        if let Err(e) = queued.durable().await {
            return audit_unavailable(e);
        }
    }
    let authorized = Authorized {
        principal: principal.clone(),
        guard: g.clone(),
        peer,
        method: req.method().to_string(),
        path: path.clone(),
    };
    req.extensions_mut().insert(authorized);
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Largest body the `/access/v1` endpoints read.
pub const MAX_ACCESS_BODY: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    principal: String,
    #[serde(default)]
    roles: BTreeSet<String>,
    expires_in_seconds: u64,
}

fn token_error(e: super::tokens::TokenError) -> ApiError {
    use super::tokens::TokenError;
    match e {
        TokenError::Invalid(m) => ApiError::invalid(m),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            other.to_string(),
        ),
    }
}

async fn create_token(
    State(a): State<Arc<Access>>,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let t: NewToken =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    let (token, record) = a
        .tokens
        .create(&t.principal, &t.roles, t.expires_in_seconds, &p.id)
        .map_err(token_error)?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"token": token, "id": record.id, "principal": record.principal,
                    "roles": record.roles, "expires": record.expires,
                    "note": "the token is shown only now; the ledger keeps only its hash"}),
        ),
    )
        .into_response())
}

async fn list_tokens(State(a): State<Arc<Access>>) -> Result<Response, ApiError> {
    let list = a.tokens.list().map_err(token_error)?;
    Ok(Json(json!({ "tokens": list })).into_response())
}

async fn revoke_token(
    State(a): State<Arc<Access>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if a.tokens.revoke(&id).map_err(token_error)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no token with id {id:?}")))
    }
}

async fn mint_session(
    State(a): State<Arc<Access>>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    // A session cannot renew itself: the long-lived credential must be shown again, so a
    // stolen session dies within its 15 minutes.
    if p.method == AuthMethod::Session {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a session cannot mint another session; present the API token or identity token",
        ));
    }
    let (token, expires) = a
        .sessions
        .mint(&p)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(Json(json!({"token": token, "expires": expires, "principal": p.id})).into_response())
}

async fn whoami(State(a): State<Arc<Access>>, Extension(p): Extension<Principal>) -> Response {
    let grants = a.grants.list(Some(&p.id), now());
    Json(json!({ "principal": p, "grants": grants })).into_response()
}

async fn reload(
    State(g): State<Arc<Guard>>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let a = &g.access;
    // One reload at a time, so the audit log's policy records follow the order in which
    // the sets were put in force.
    let _one = g.reloading.lock().await;
    match a.reload_policy() {
        Ok(engine) => {
            let (schema, policies) = engine.texts();
            // The new set is in force from the moment its record is durable; decisions
            // queued meanwhile name its digest.
            g.audit
                .policy_in_force(&p.id, engine.digest(), schema, policies)
                .await
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "audit_unavailable",
                        format!("the new policy is in force but its audit record failed: {e}"),
                    )
                })?;
            Ok(Json(json!({"policy_digest": engine.digest()})).into_response())
        }
        Err(e) => Err(ApiError::invalid(format!(
            "the new policy set was refused and the one in force ({}) stays: {e:#}",
            a.policy().digest()
        ))),
    }
}

pub fn router<S: Clone + Send + Sync + 'static>(guard: Arc<Guard>) -> Router<S> {
    let access = guard.access.clone();
    Router::new()
        .route("/access/v1/tokens", post(create_token).get(list_tokens))
        .route("/access/v1/tokens/{id}", delete(revoke_token))
        .route("/access/v1/session", post(mint_session))
        .route("/access/v1/whoami", get(whoami))
        .with_state(access)
        .merge(
            Router::new()
                .route("/access/v1/policy/reload", post(reload))
                .with_state(guard),
        )
        // Token requests are a few hundred bytes; the rest have no body.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_ACCESS_BODY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_actions_without_looking_anything_up() {
        let logs = BTreeMap::from([("artifacts".to_string(), "localhost/artifacts".to_string())]);
        let c = |m: Method, p: &str| classify(&m, p, &logs);
        assert_eq!(c(Method::POST, "/artifacts/add").0, Action::Append);
        assert_eq!(c(Method::POST, "/artifacts/add-batch").0, Action::Append);
        assert_eq!(c(Method::GET, "/artifacts/tile/0/000").0, Action::Read);
        // An unknown log is still a Log resource: the decision does not reveal existence.
        assert_eq!(
            c(Method::GET, "/nope/checkpoint").1,
            Resource::Log {
                name: "nope".into(),
                origin: String::new()
            }
        );
        assert_eq!(c(Method::POST, "/registry/v1/publish").0, Action::Publish);
        assert_eq!(
            c(Method::POST, "/registry/v1/lifecycle").0,
            Action::Transition
        );
        assert_eq!(
            c(Method::POST, "/registry/v1/tombstone").0,
            Action::Tombstone
        );
        assert_eq!(c(Method::POST, "/registry/v1/approve").0, Action::Approve);
        assert_eq!(c(Method::POST, "/registry/v1/metadata").0, Action::Annotate);
        assert_eq!(c(Method::GET, "/registry/v1/versions").0, Action::Read);
        assert_eq!(c(Method::PATCH, "/v2/x/blobs/uploads/1").0, Action::Upload);
        assert_eq!(c(Method::GET, "/v2/x/blobs/sha256:00").0, Action::Download);
        assert_eq!(c(Method::GET, "/metrics").0, Action::Admin);
        assert_eq!(
            c(Method::POST, "/access/v1/grants"),
            (Action::Grant, Resource::Registry)
        );
        assert_eq!(c(Method::DELETE, "/access/v1/grants/g00").0, Action::Grant);
        assert_eq!(c(Method::GET, "/access/v1/grants").0, Action::Read);
        assert_eq!(c(Method::DELETE, "/access/v1/tokens/ab").0, Action::Admin);
        assert!(public("/healthz") && !public("/metrics"));
    }
}
