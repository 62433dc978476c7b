//! Test helper: looks at a PKCS#11 token with `cryptoki` directly, independently of the
//! ledger's own PKCS#11 code, and prints what it finds as JSON. Runs as a child process
//! because a PKCS#11 module's state (C_Initialize, login) is per process.
//!
//! ```text
//! pkcs11-probe --module SO --token LABEL --pin-file FILE inspect --label KEY
//! pkcs11-probe ... destroy --label KEY
//! pkcs11-probe ... bench --label KEY --origin ORIGIN --n N
//! ```

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut flags = HashMap::new();
    let mut command = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].strip_prefix("--") {
            Some(k) => {
                let v = args
                    .get(i + 1)
                    .unwrap_or_else(|| die(&format!("--{k} needs a value")));
                flags.insert(k.to_string(), v.clone());
                i += 2;
            }
            None => {
                command = Some(args[i].clone());
                i += 1;
            }
        }
    }
    let flag = |k: &str| {
        flags
            .get(k)
            .cloned()
            .unwrap_or_else(|| die(&format!("--{k} is required")))
    };
    let module = PathBuf::from(flag("module"));
    let token = flag("token");
    let pin = std::fs::read_to_string(flag("pin-file")).unwrap();
    let label = flag("label");

    let ctx = Pkcs11::new(&module).unwrap_or_else(|e| die(&format!("loading module: {e}")));
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token)
        .unwrap_or_else(|| die(&format!("no token {token:?}")));
    let session = ctx.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::from(pin.trim_end())))
        .unwrap();

    let out = match command.as_deref() {
        Some("inspect") => inspect(&session, &label),
        Some("destroy") => {
            let objects = session
                .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
                .unwrap();
            for o in &objects {
                session.destroy_object(*o).unwrap();
            }
            json!({ "destroyed": objects.len() })
        }
        Some("bench") => {
            let n: usize = flag("n").parse().unwrap();
            let config = ledger::hsm::HsmConfig {
                module: module.clone(),
                token: token.clone(),
                pin_file: PathBuf::from(flag("pin-file")),
            };
            bench(&session, config, &label, &flag("origin"), n)
        }
        other => die(&format!("unknown command {other:?}")),
    };
    println!("{out}");
}

fn die(msg: &str) -> ! {
    eprintln!("pkcs11-probe: {msg}");
    std::process::exit(2)
}

fn find(session: &Session, class: ObjectClass, label: &str) -> ObjectHandle {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    match found.as_slice() {
        [h] => *h,
        other => die(&format!(
            "{} objects of class {class} labelled {label:?}",
            other.len()
        )),
    }
}

fn flag_of(session: &Session, h: ObjectHandle, t: AttributeType) -> Value {
    match session.get_attributes(h, &[t]).unwrap().first() {
        Some(
            Attribute::Sensitive(b)
            | Attribute::Extractable(b)
            | Attribute::AlwaysSensitive(b)
            | Attribute::NeverExtractable(b)
            | Attribute::Sign(b)
            | Attribute::Token(b)
            | Attribute::Private(b),
        ) => json!(b),
        _ => Value::Null,
    }
}

/// Everything about the key's custody: its flags, whether its value can be read, wrapped
/// out under a key we choose, or made extractable.
fn inspect(session: &Session, label: &str) -> Value {
    let private = find(session, ObjectClass::PRIVATE_KEY, label);
    let public = find(session, ObjectClass::PUBLIC_KEY, label);
    let mut flags = serde_json::Map::new();
    for (name, t) in [
        ("sensitive", AttributeType::Sensitive),
        ("extractable", AttributeType::Extractable),
        ("always_sensitive", AttributeType::AlwaysSensitive),
        ("never_extractable", AttributeType::NeverExtractable),
        ("sign", AttributeType::Sign),
        ("token", AttributeType::Token),
        ("private", AttributeType::Private),
    ] {
        flags.insert(name.into(), flag_of(session, private, t));
    }
    // C_GetAttributeValue on CKA_VALUE: size query and read.
    let value_info = match session.get_attribute_info(private, &[AttributeType::Value]) {
        Ok(v) => match v.first() {
            Some(AttributeInfo::Sensitive) => "sensitive".to_string(),
            Some(AttributeInfo::Available(n)) => format!("available ({n} bytes)"),
            Some(AttributeInfo::Unavailable) => "unavailable".to_string(),
            Some(AttributeInfo::TypeInvalid) => "type invalid".to_string(),
            None => "none".to_string(),
        },
        Err(e) => format!("error: {e}"),
    };
    let value_read = match session.get_attributes(private, &[AttributeType::Value]) {
        Ok(v) if v.is_empty() => "not returned".to_string(),
        Ok(v) => format!("returned {} attribute(s)", v.len()),
        Err(e) => format!("error: {e}"),
    };
    // Wrap it under an AES key we hold: the way keys are legitimately exported.
    let aes = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(32.into()),
                Attribute::Wrap(true),
                Attribute::Encrypt(true),
            ],
        )
        .unwrap();
    let wrap = match session.wrap_key(&Mechanism::AesKeyWrapPad, aes, private) {
        Ok(w) => format!("wrapped {} bytes", w.len()),
        Err(e) => format!("refused: {e}"),
    };
    let set_extractable = match session.update_attributes(private, &[Attribute::Extractable(true)])
    {
        Ok(()) => "allowed".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    let ec_point = match session
        .get_attributes(public, &[AttributeType::EcPoint])
        .unwrap()
        .first()
    {
        Some(Attribute::EcPoint(p)) => p.clone(),
        _ => vec![],
    };
    // SoftHSM2 wraps the point in a DER OCTET STRING (04 20 ...).
    let point = match ec_point.as_slice() {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.to_vec(),
        raw => raw.to_vec(),
    };
    json!({
        "flags": flags,
        "value_info": value_info,
        "value_read": value_read,
        "wrap": wrap,
        "set_extractable": set_extractable,
        "public_key": hex(&point),
    })
}

/// Times signatures: C_Sign alone, and the ledger's signer (one locked session, each
/// signature verified before use) as the sequencer calls it once per batch.
fn bench(
    session: &Session,
    config: ledger::hsm::HsmConfig,
    label: &str,
    origin: &str,
    n: usize,
) -> Value {
    let private = find(session, ObjectClass::PRIVATE_KEY, label);
    let mech = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
    let msg = format!("{origin}\n123456\nq2bvSw/4lKzX8oYBFCGTA8BnLCNDRKDEXJFqjlbtr2M=\n");
    let mut raw = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        session.sign(&mech, private, msg.as_bytes()).unwrap();
        raw.push(t.elapsed().as_secs_f64() * 1e6);
    }
    // The ledger's signer, in this same process: its module is already initialised and the
    // token logged in, which it must accept (PKCS#11 state is per process).
    let token = ledger::hsm::Token::open(&config).unwrap();
    let signer = ledger::hsm::Pkcs11Signer::open(token, label, origin).unwrap();
    let mut ours = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        signer.sign_checked(msg.as_bytes()).unwrap();
        ours.push(t.elapsed().as_secs_f64() * 1e6);
    }
    json!({ "n": n, "c_sign_us": stats(&mut raw), "ledger_signer_us": stats(&mut ours) })
}

fn stats(v: &mut [f64]) -> Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let pct = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    json!({
        "mean": (mean * 10.0).round() / 10.0,
        "p50": (pct(0.5) * 10.0).round() / 10.0,
        "p99": (pct(0.99) * 10.0).round() / 10.0,
        "max": (v[v.len() - 1] * 10.0).round() / 10.0,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
