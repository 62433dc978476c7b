//! The access layer in front of every route (specs/access.md): authenticate the bearer
//! credential (401 without a valid one), map the route to a Cedar action and resource,
//! authorize (403 when denied), and hand the principal to the handler. Both refusals are
//! decided before the route looks anything up, so neither says whether the thing exists.
//!
//! Also the `/access/v1` endpoints: tokens (admin), sessions, who-am-I, policy reload.

use super::authz::{Action, RequestContext, Resource};
use super::config::Access;
use super::principal::{AuthMethod, Principal};
use super::tokens::now;
use crate::api_error::ApiError;
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

/// What the access layer needs to know about the hosted logs: name → origin.
pub struct Guard {
    pub access: Arc<Access>,
    pub logs: BTreeMap<String, String>,
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
        ["v2", ..] if reading => (Action::Download, Resource::Registry),
        ["v2", ..] => (Action::Upload, Resource::Registry),
        ["registry", "v1", rest @ ..] if !reading => {
            let action = match rest.first().copied() {
                Some("publish") => Action::Publish,
                Some("lifecycle") => Action::Transition,
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
    let v = v.to_str().map_err(|_| "the Authorization header is not ASCII")?;
    let (scheme, cred) = v.split_once(' ').ok_or("the Authorization header has no scheme")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("only Bearer credentials are accepted");
    }
    let cred = cred.trim();
    if cred.is_empty() || cred.len() > 16 * 1024 {
        return Err("the bearer credential is empty or too long");
    }
    Ok(Some(cred))
}

/// The middleware: authenticate, authorize, pass the principal on.
pub async fn guard(
    State(g): State<Arc<Guard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    if public(&path) {
        return next.run(req).await;
    }
    let principal = match bearer(&req) {
        Ok(Some(cred)) => match g.access.authenticate(cred) {
            Ok(p) => p,
            Err(e) => return unauthorized(e),
        },
        Ok(None) => return unauthorized("this endpoint needs a Bearer credential (API token, session or identity token)"),
        Err(e) => return unauthorized(e),
    };
    // Who-am-I and sessions only need a valid credential: they are about the caller.
    let self_service = matches!(path.as_str(), "/access/v1/whoami" | "/access/v1/session");
    if !self_service {
        let (action, resource) = classify(req.method(), &path, &g.logs);
        let ctx = RequestContext {
            now: now() as i64,
            source_ip: peer.ip().to_string(),
        };
        match g.access.policy().authorize(&principal, action, &resource, &ctx) {
            Ok(v) if v.allowed => {}
            Ok(v) => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "{} may not {} {} under policy {}",
                        principal.id,
                        action.name(),
                        resource.describe(),
                        &v.policy_digest[..16]
                    ),
                )
                .into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "authorization failed to evaluate");
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the request could not be authorized (deny by default)",
                )
                .into_response();
            }
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

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
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", other.to_string()),
    }
}

async fn create_token(
    State(a): State<Arc<Access>>,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let t: NewToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    let (token, record) = a
        .tokens
        .create(&t.principal, &t.roles, t.expires_in_seconds, &p.id)
        .map_err(token_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "id": record.id, "principal": record.principal,
                    "roles": record.roles, "expires": record.expires,
                    "note": "the token is shown only now; the ledger keeps only its hash"})),
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
    let (token, expires) = a.sessions.mint(&p).map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    })?;
    Ok(Json(json!({"token": token, "expires": expires, "principal": p.id})).into_response())
}

async fn whoami(Extension(p): Extension<Principal>) -> Response {
    Json(json!({ "principal": p })).into_response()
}

async fn reload(State(a): State<Arc<Access>>) -> Result<Response, ApiError> {
    match a.reload_policy() {
        Ok(digest) => Ok(Json(json!({"policy_digest": digest})).into_response()),
        Err(e) => Err(ApiError::invalid(format!(
            "the new policy set was refused and the one in force ({}) stays: {e:#}",
            a.policy().digest()
        ))),
    }
}

pub fn router<S: Clone + Send + Sync + 'static>(access: Arc<Access>) -> Router<S> {
    Router::new()
        .route("/access/v1/tokens", post(create_token).get(list_tokens))
        .route("/access/v1/tokens/{id}", delete(revoke_token))
        .route("/access/v1/session", post(mint_session))
        .route("/access/v1/whoami", get(whoami))
        .route("/access/v1/policy/reload", post(reload))
        .with_state(access)
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
        assert_eq!(c(Method::POST, "/registry/v1/lifecycle").0, Action::Transition);
        assert_eq!(c(Method::POST, "/registry/v1/tombstone").0, Action::Tombstone);
        assert_eq!(c(Method::POST, "/registry/v1/metadata").0, Action::Annotate);
        assert_eq!(c(Method::GET, "/registry/v1/versions").0, Action::Read);
        assert_eq!(c(Method::PATCH, "/v2/x/blobs/uploads/1").0, Action::Upload);
        assert_eq!(c(Method::GET, "/v2/x/blobs/sha256:00").0, Action::Download);
        assert_eq!(c(Method::GET, "/metrics").0, Action::Admin);
        assert_eq!(c(Method::DELETE, "/access/v1/tokens/ab").0, Action::Admin);
        assert!(public("/healthz") && !public("/metrics"));
    }
}
