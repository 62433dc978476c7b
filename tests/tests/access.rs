//! Access control end to end (specs/access.md): the real `ledger` with `--access-config`,
//! API tokens created offline and over HTTP, sessions, a CI identity token signed by a
//! configured issuer, and the Cedar decisions the shipped policies make.

use base64::prelude::*;
use ed25519_dalek::{Signer, SigningKey};
use ledger_e2e::{agent, binary, request, Ledger, Resp};
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn call(method: &str, url: &str, token: Option<&str>, body: &[u8], ct: &str) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", ct)];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    request(&agent(), method, url, &headers, body).unwrap()
}

fn get(url: &str, token: Option<&str>) -> Resp {
    call("GET", url, token, b"", "text/plain")
}

fn add(l: &Ledger, token: Option<&str>, entry: &[u8]) -> Resp {
    call(
        "POST",
        &l.url("/artifacts/add"),
        token,
        entry,
        "application/octet-stream",
    )
}

/// `ledger token create` on a stopped ledger.
fn offline_token(data: &Path, principal: &str, role: &str) -> String {
    let out = Command::new(binary("ledger"))
        .arg("token")
        .arg("--data-dir")
        .arg(data)
        .args(["create", "--principal", principal, "--role", role])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn b64url(b: &[u8]) -> String {
    BASE64_URL_SAFE_NO_PAD.encode(b)
}

/// A compact JWS signed with Ed25519 (RFC 8037), built by hand: independent of the
/// `jsonwebtoken` crate the ledger verifies with.
fn jwt(key: &SigningKey, kid: &str, alg: &str, claims: &serde_json::Value) -> String {
    let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&sig.to_bytes()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const ISSUER: &str = "https://ci.example.test";

/// A data directory with an admin token, and an access configuration trusting one CI
/// issuer whose tokens from `org/models` are publishers.
fn setup(dir: &Path, ci_key: &SigningKey) -> (std::path::PathBuf, String) {
    let data = dir.join("ledger");
    // Create the database (and the log) first, then stop, then create the admin token.
    drop(Ledger::start(&data, &[]));
    let admin = offline_token(&data, "root", "admin");
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA",
                                "use": "sig", "x": b64url(ci_key.verifying_key().as_bytes())}]});
    std::fs::write(dir.join("ci-jwks.json"), jwks.to_string()).unwrap();
    let config = json!({
        "session_ttl_seconds": 600,
        "oidc": [{
            "issuer": ISSUER, "audience": "ledger", "jwks_file": "ci-jwks.json",
            "attributes": {"repository": "repository", "branch": "ref"},
            "roles": [{"role": "publisher", "claims": {"repository": "org/models"}}]
        }]
    });
    std::fs::write(dir.join("access.json"), config.to_string()).unwrap();
    (data, admin)
}

#[test]
fn without_a_credential_every_route_is_401_and_nothing_leaks_whether_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, _) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    for path in [
        "/artifacts/checkpoint",
        "/no-such-log/checkpoint",
        "/registry/v1/versions?name=x",
        "/metrics",
        "/logs",
        "/nowhere",
    ] {
        let r = get(&l.url(path), None);
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"ledger\"")
        );
        assert_eq!(r.json()["error"]["code"], "unauthenticated");
    }
    assert_eq!(add(&l, None, b"x").status, 401);
    assert_eq!(
        add(&l, Some("ldgr_0000000000000000_AAAA"), b"x").status,
        401
    );
    assert_eq!(add(&l, Some("garbage"), b"x").status, 401);
    let r = call(
        "GET",
        &l.url("/artifacts/checkpoint"),
        None,
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 401);
    // Basic credentials are not accepted.
    let r = request(
        &agent(),
        "GET",
        &l.url("/artifacts/checkpoint"),
        &[("authorization", "Basic cm9vdDpyb290")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    // Liveness stays public.
    assert_eq!(get(&l.url("/healthz"), None).status, 200);
    assert_eq!(get(&l.url("/readyz"), None).status, 200);
}

#[test]
fn roles_decide_what_a_token_may_do_and_revocation_is_immediate() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let mint = |principal: &str, role: &str| -> (String, String) {
        let r = call(
            "POST",
            &l.url("/access/v1/tokens"),
            Some(&admin),
            json!({"principal": principal, "roles": [role], "expires_in_seconds": 3600})
                .to_string()
                .as_bytes(),
            "application/json",
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let j = r.json();
        (
            j["token"].as_str().unwrap().to_string(),
            j["id"].as_str().unwrap().to_string(),
        )
    };
    let (reader, reader_id) = mint("rita", "reader");
    let (publisher, _) = mint("paul", "publisher");

    // Reader: reads, may not append; a 403 names the action, not whether things exist.
    assert_eq!(
        get(&l.url("/artifacts/checkpoint"), Some(&reader)).status,
        200
    );
    let r = add(&l, Some(&reader), b"from a reader");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("may not append"), "{}", r.text());
    // Authorized to read logs, so an unknown one is now an honest 404.
    assert_eq!(
        get(&l.url("/no-such-log/checkpoint"), Some(&reader)).status,
        404
    );
    // Only admins manage tokens or read metrics.
    assert_eq!(get(&l.url("/access/v1/tokens"), Some(&reader)).status, 403);
    assert_eq!(get(&l.url("/metrics"), Some(&reader)).status, 403);
    assert_eq!(get(&l.url("/metrics"), Some(&admin)).status, 200);

    // Publisher: appends.
    assert_eq!(add(&l, Some(&publisher), b"from a publisher").status, 200);

    // The token list never shows secrets.
    let list = get(&l.url("/access/v1/tokens"), Some(&admin)).text();
    assert!(!list.contains(reader.rsplit('_').next().unwrap()));

    // Revocation takes effect on the next request.
    let r = call(
        "DELETE",
        &l.url(&format!("/access/v1/tokens/{reader_id}")),
        Some(&admin),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = get(&l.url("/artifacts/checkpoint"), Some(&reader));
    assert_eq!(r.status, 401);
    assert!(r.text().contains("revoked"), "{}", r.text());

    // Bad token requests name the problem.
    for body in [
        json!({"principal": "Bad Name", "roles": ["reader"], "expires_in_seconds": 60}),
        json!({"principal": "x", "roles": ["reader"], "expires_in_seconds": 0}),
        json!({"principal": "x", "roles": ["reader"], "expires_in_seconds": 100000000}),
    ] {
        let r = call(
            "POST",
            &l.url("/access/v1/tokens"),
            Some(&admin),
            body.to_string().as_bytes(),
            "application/json",
        );
        assert_eq!(r.status, 422, "{body}: {}", r.text());
    }
    let r = call(
        "POST",
        &l.url("/access/v1/tokens"),
        Some(&admin),
        b"{",
        "application/json",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn a_session_is_short_lived_cannot_renew_itself_and_carries_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let r = call(
        "POST",
        &l.url("/access/v1/session"),
        Some(&admin),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let session = j["token"].as_str().unwrap().to_string();
    let expires = j["expires"].as_u64().unwrap();
    assert!(expires <= now() + 600 && expires > now() + 500, "{expires}");
    let who = get(&l.url("/access/v1/whoami"), Some(&session)).json();
    assert_eq!(who["principal"]["id"], "root");
    assert_eq!(who["principal"]["method"]["kind"], "session");
    assert_eq!(get(&l.url("/metrics"), Some(&session)).status, 200);
    let r = call(
        "POST",
        &l.url("/access/v1/session"),
        Some(&session),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // A tampered session (another signature) is refused.
    let mut parts: Vec<&str> = session.split('.').collect();
    let forged_sig = b64url(&[0u8; 64]);
    parts[2] = &forged_sig;
    assert_eq!(get(&l.url("/metrics"), Some(&parts.join("."))).status, 401);
}

#[test]
fn a_ci_identity_token_is_verified_offline_and_its_claims_become_roles_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, _) = setup(dir.path(), &ci);
    let cfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let claims = |repo: &str, aud: &str, exp: u64, nbf: u64| {
        json!({"iss": ISSUER, "aud": aud, "sub": format!("repo:{repo}:ref:refs/heads/main"),
               "exp": exp, "nbf": nbf, "iat": now(), "repository": repo,
               "ref": "refs/heads/main", "amr": ["pwd", "mfa"]})
    };
    let good = jwt(
        &ci,
        "k1",
        "EdDSA",
        &claims("org/models", "ledger", now() + 300, now() - 10),
    );
    let who = get(&l.url("/access/v1/whoami"), Some(&good));
    assert_eq!(who.status, 200, "{}", who.text());
    let p = &who.json()["principal"];
    assert_eq!(p["roles"], json!(["publisher"]));
    assert_eq!(p["attributes"]["repository"], "org/models");
    assert_eq!(p["attributes"]["branch"], "refs/heads/main");
    assert_eq!(p["mfa"], true);
    assert_eq!(add(&l, Some(&good), b"built by CI").status, 200);

    // Another repository authenticates but has no role: 403, not 401.
    let fork = jwt(
        &ci,
        "k1",
        "EdDSA",
        &claims("evil/fork", "ledger", now() + 300, now() - 10),
    );
    assert_eq!(add(&l, Some(&fork), b"x").status, 403);

    // Each broken property is a 401.
    let other_key = SigningKey::from_bytes(&[10; 32]);
    for (what, token) in [
        (
            "wrong audience",
            jwt(
                &ci,
                "k1",
                "EdDSA",
                &claims("org/models", "other", now() + 300, now() - 10),
            ),
        ),
        (
            "expired beyond the leeway",
            jwt(
                &ci,
                "k1",
                "EdDSA",
                &claims("org/models", "ledger", now() - 600, now() - 900),
            ),
        ),
        (
            "not yet valid",
            jwt(
                &ci,
                "k1",
                "EdDSA",
                &claims("org/models", "ledger", now() + 3600, now() + 1800),
            ),
        ),
        (
            "unknown key id",
            jwt(
                &ci,
                "k2",
                "EdDSA",
                &claims("org/models", "ledger", now() + 300, now() - 10),
            ),
        ),
        (
            "wrong signer",
            jwt(
                &other_key,
                "k1",
                "EdDSA",
                &claims("org/models", "ledger", now() + 300, now() - 10),
            ),
        ),
        ("alg none", {
            let t = jwt(
                &ci,
                "k1",
                "none",
                &claims("org/models", "ledger", now() + 300, now() - 10),
            );
            let mut p: Vec<&str> = t.split('.').collect();
            p[2] = "";
            p.join(".")
        }),
        (
            "HMAC",
            jwt(
                &ci,
                "k1",
                "HS256",
                &claims("org/models", "ledger", now() + 300, now() - 10),
            ),
        ),
    ] {
        let r = add(&l, Some(&token), b"x");
        assert_eq!(r.status, 401, "{what}: {}", r.text());
    }
    let untrusted =
        json!({"iss": "https://elsewhere", "aud": "ledger", "sub": "x", "exp": now() + 300});
    let r = add(&l, Some(&jwt(&ci, "k1", "EdDSA", &untrusted)), b"x");
    assert_eq!(r.status, 401);
    assert!(r.text().contains("not trusted"), "{}", r.text());
}

#[test]
fn an_invalid_policy_is_refused_at_start_and_on_reload_the_old_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    // A policy file naming an action the schema does not have.
    std::fs::write(
        dir.path().join("bad.cedar"),
        r#"permit (principal, action == Ledger::Action::"fly", resource);"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        json!({"policies": "bad.cedar"}).to_string(),
    )
    .unwrap();
    let out = Command::new(binary("ledger"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--access-config"])
        .arg(dir.path().join("bad.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("do not validate"), "{err}");

    // Start with a good custom policy file, then break it and reload.
    let good = ledger::access::authz::DEFAULT_POLICIES;
    std::fs::write(dir.path().join("p.cedar"), good).unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        json!({"policies": "p.cedar"}).to_string(),
    )
    .unwrap();
    let cfg = dir.path().join("p.json");
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    std::fs::write(
        dir.path().join("p.cedar"),
        "permit (principal, action, resource",
    )
    .unwrap();
    let r = call(
        "POST",
        &l.url("/access/v1/policy/reload"),
        Some(&admin),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("stays"), "{}", r.text());
    assert_eq!(
        get(&l.url("/metrics"), Some(&admin)).status,
        200,
        "old set in force"
    );
    // A valid change takes effect: admins lose metrics.
    std::fs::write(
        dir.path().join("p.cedar"),
        r#"@id("read-only") permit (principal, action == Ledger::Action::"read", resource);"#,
    )
    .unwrap();
    let r = call(
        "POST",
        &l.url("/access/v1/policy/reload"),
        Some(&admin),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&l.url("/metrics"), Some(&admin)).status, 403);
    assert_eq!(
        get(&l.url("/artifacts/checkpoint"), Some(&admin)).status,
        200
    );
}

/// The access audit log's records, read as any auditor would: its checkpoint (verified
/// with the audit log's own key) and its entry bundle over the tlog-tiles read path.
fn audit_records(l: &Ledger, token: &str) -> Vec<serde_json::Value> {
    let cp = get(&l.url("/audit/checkpoint"), Some(token));
    assert_eq!(cp.status, 200, "{}", cp.text());
    let verified =
        ledger_client::checkpoint::verify_checkpoint(cp.body.as_slice(), &[l.vkey("audit")], None)
            .expect("the audit checkpoint verifies under the audit log's key");
    let size = verified.size;
    assert!(
        size > 0 && size < 256,
        "one partial bundle holds them: {size}"
    );
    let r = get(
        &l.url(&format!("/audit/tile/entries/000.p/{size}")),
        Some(token),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let entries = ledger_client::tiles::decode_bundle(&r.body).unwrap();
    // Every entry is in the tree the checkpoint signs.
    let leaves: Vec<_> = entries
        .iter()
        .map(|e| ledger_client::merkle::leaf_hash(e))
        .collect();
    assert_eq!(
        ledger_client::merkle::root_from_leaves(&leaves),
        verified.root,
        "the audit records are exactly the signed tree"
    );
    entries
        .iter()
        .map(|e| serde_json::from_slice(e).expect("records are JSON"))
        .collect()
}

#[test]
fn every_decision_and_every_policy_in_force_is_in_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let ci = SigningKey::from_bytes(&[9; 32]);
    let (data, admin) = setup(dir.path(), &ci);
    let good = ledger::access::authz::DEFAULT_POLICIES;
    std::fs::write(dir.path().join("p.cedar"), good).unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        json!({"policies": "p.cedar"}).to_string(),
    )
    .unwrap();
    let cfg = dir.path().join("p.json");
    let mut l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    assert_ne!(l.vkey("audit"), l.vkey("artifacts"), "its own key");

    // A 401, a 403 and an allowed write.
    assert_eq!(get(&l.url("/artifacts/checkpoint"), None).status, 401);
    let r = call(
        "POST",
        &l.url("/access/v1/tokens"),
        Some(&admin),
        json!({"principal": "rita", "roles": ["reader"], "expires_in_seconds": 60})
            .to_string()
            .as_bytes(),
        "application/json",
    );
    let reader = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(add(&l, Some(&reader), b"denied").status, 403);
    assert_eq!(add(&l, Some(&admin), b"acknowledged").status, 200);
    // Nobody writes the audit log over HTTP, admins included.
    let r = call(
        "POST",
        &l.url("/audit/add"),
        Some(&admin),
        b"{\"type\":\"decision\"}",
        "application/octet-stream",
    );
    assert_eq!(r.status, 403, "{}", r.text());

    // The acknowledged write's record survives kill -9.
    l.kill9();
    let l = Ledger::start(&data, &["--access-config", cfg.to_str().unwrap()]);
    let records = audit_records(&l, &admin);
    let digest = ledger::access::authz::policy_digest(ledger::access::authz::DEFAULT_SCHEMA, good);
    let startup = &records[0];
    assert_eq!(startup["type"], "policy");
    assert_eq!(startup["by"], "startup");
    assert_eq!(startup["policy_digest"], digest.as_str());
    assert_eq!(
        startup["policies"], good,
        "the rules themselves are in the log"
    );
    let decision = |method: &str, path: &str| {
        records
            .iter()
            .find(|r| r["type"] == "decision" && r["method"] == method && r["path"] == path)
            .unwrap_or_else(|| panic!("no record of {method} {path} in {records:#?}"))
            .clone()
    };
    let unauth = decision("GET", "/artifacts/checkpoint");
    assert_eq!(unauth["decision"], "unauthenticated");
    assert_eq!(unauth["principal"], serde_json::Value::Null);
    assert!(unauth["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    let adds: Vec<_> = records
        .iter()
        .filter(|r| r["path"] == "/artifacts/add")
        .collect();
    assert_eq!(adds.len(), 2, "{adds:#?}");
    assert_eq!(adds[0]["principal"], "rita");
    assert_eq!(adds[0]["decision"], "deny");
    assert_eq!(adds[0]["action"], "append");
    assert_eq!(adds[0]["resource"], "Ledger::Log::\"artifacts\"");
    assert_eq!(adds[1]["principal"], "root");
    assert_eq!(adds[1]["decision"], "allow");
    assert_eq!(adds[1]["policies"], json!(["admins-admin"]));
    assert_eq!(adds[1]["policy_digest"], digest.as_str());
    let forged = decision("POST", "/audit/add");
    assert_eq!(
        forged["decision"], "allow",
        "the policy allowed it; the log refused it"
    );
    // The restart put the policy in force again.
    assert_eq!(
        records.iter().filter(|r| r["type"] == "policy").count(),
        2,
        "{records:#?}"
    );

    // A reload is logged with who did it, and later decisions name the new digest.
    let narrower = format!("{good}\n@id(\"no-metrics\") forbid (principal, action == Ledger::Action::\"admin\", resource == Ledger::Service::\"ledger\") when {{ context.hour_utc > 24 }};\n");
    std::fs::write(dir.path().join("p.cedar"), &narrower).unwrap();
    let r = call(
        "POST",
        &l.url("/access/v1/policy/reload"),
        Some(&admin),
        b"",
        "text/plain",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let new_digest =
        ledger::access::authz::policy_digest(ledger::access::authz::DEFAULT_SCHEMA, &narrower);
    assert_eq!(r.json()["policy_digest"], new_digest.as_str());
    assert_eq!(get(&l.url("/logs"), Some(&admin)).status, 200);
    // A read's record is queued, not waited for; a write waits for its own, and the pool
    // is first come, first sequenced.
    assert_eq!(add(&l, Some(&admin), b"after the reload").status, 200);
    let records = audit_records(&l, &admin);
    let reload = records.iter().rfind(|r| r["type"] == "policy").unwrap();
    assert_eq!(reload["by"], "root");
    assert_eq!(reload["policy_digest"], new_digest.as_str());
    let logs = records.iter().rfind(|r| r["path"] == "/logs").unwrap();
    assert_eq!(logs["policy_digest"], new_digest.as_str());
}
