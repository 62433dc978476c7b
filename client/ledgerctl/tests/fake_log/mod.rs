//! A tiny in-process stand-in for the ledger server (specs/api.md), on 127.0.0.1 only, so
//! the CLI's network commands can be tested before and independently of the real server.
//! It can be told to misbehave (fork, roll back, sign with the wrong key, send bad proofs).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use ledger_client::checkpoint::sign_checkpoint;
use ledger_client::merkle::{hash_from_hex, hash_to_base64, leaf_hash, Hash};
use ledger_client::tiles::{decode_bundle, encode_bundle, TileKind, TilePath};
use ledger_client::tlog_proof::TlogProof;
use serde_json::json;

use crate::common::MemTree;

pub const ORIGIN: &str = "127.0.0.1/artifacts";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Honest,
    /// Serve a different history that shares only the first `n` entries.
    Fork(u64),
    /// Serve the checkpoint of an older size.
    Rollback(u64),
    /// Sign checkpoints with a key the client does not trust.
    WrongKey,
    /// Flip a bit in every inclusion and consistency proof.
    TamperProofs,
}

pub struct State {
    pub skey: String,
    pub vkey: String,
    pub other_skey: String,
    pub entries: Vec<Vec<u8>>,
    pub tree: MemTree,
    pub mode: Mode,
}

pub struct FakeLog {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

impl FakeLog {
    pub fn start() -> FakeLog {
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
        let (other_skey, _) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
        let state = Arc::new(Mutex::new(State {
            skey,
            vkey,
            other_skey,
            entries: Vec::new(),
            tree: MemTree::new(),
            mode: Mode::Honest,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}/artifacts", listener.local_addr().unwrap());
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, &st);
                });
            }
        });
        FakeLog { url, state }
    }

    pub fn vkey(&self) -> String {
        self.state.lock().unwrap().vkey.clone()
    }

    pub fn set_mode(&self, m: Mode) {
        self.state.lock().unwrap().mode = m;
    }

    pub fn append(&self, data: &[u8]) {
        let mut s = self.state.lock().unwrap();
        s.entries.push(data.to_vec());
        s.tree.push(data);
    }
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    body: Vec<u8>,
}

fn handle(conn: TcpStream, st: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let req = Request {
        method,
        path: path.to_string(),
        query,
        body,
    };
    let (status, ctype, resp) = {
        let mut s = st.lock().unwrap();
        route(&req, &mut s)
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.len()
    )?;
    conn.write_all(&resp)?;
    conn.flush()
}

type Resp = (u16, &'static str, Vec<u8>);

fn error(status: u16, code: &str, message: &str) -> Resp {
    (
        status,
        "application/json",
        json!({"error": {"code": code, "message": message}})
            .to_string()
            .into_bytes(),
    )
}

fn ok_json(v: serde_json::Value) -> Resp {
    (200, "application/json", v.to_string().into_bytes())
}

fn b64s(hs: &[Hash]) -> Vec<String> {
    hs.iter().map(hash_to_base64).collect()
}

/// The tree the (possibly lying) log currently presents, and its size.
fn view(s: &State) -> (MemTree, u64) {
    match s.mode {
        Mode::Fork(common) => {
            let mut t = MemTree::new();
            for (i, e) in s.entries.iter().enumerate() {
                if (i as u64) < common {
                    t.push(e);
                } else {
                    t.push(format!("forked {i}").as_bytes());
                }
            }
            let n = t.size();
            (t, n)
        }
        Mode::Rollback(n) => (clone_tree(s), n),
        _ => (clone_tree(s), s.tree.size()),
    }
}

fn clone_tree(s: &State) -> MemTree {
    let mut t = MemTree::new();
    for e in &s.entries {
        t.push(e);
    }
    t
}

fn signed(s: &State, t: &MemTree, size: u64) -> Vec<u8> {
    let key = if s.mode == Mode::WrongKey {
        &s.other_skey
    } else {
        &s.skey
    };
    sign_checkpoint(key, ORIGIN, size, &t.root(size), &[]).unwrap()
}

fn tamper(s: &State, mut p: Vec<Hash>) -> Vec<Hash> {
    if s.mode == Mode::TamperProofs {
        if let Some(h) = p.first_mut() {
            h.0[0] ^= 1;
        }
    }
    p
}

fn q<'a>(req: &'a Request, k: &str) -> Option<&'a str> {
    req.query
        .iter()
        .find(|(kk, _)| kk == k)
        .map(|(_, v)| v.as_str())
}

fn route(req: &Request, s: &mut State) -> Resp {
    let Some(rest) = req.path.strip_prefix("/artifacts/") else {
        return error(404, "not_found", "unknown log");
    };
    match (req.method.as_str(), rest) {
        ("GET", "checkpoint") => {
            let (t, n) = view(s);
            (200, "text/plain; charset=utf-8", signed(s, &t, n))
        }
        ("POST", "add") => {
            if req.body.is_empty() {
                return error(422, "invalid", "empty entry");
            }
            let leaf = leaf_hash(&req.body);
            let (index, duplicate) = match s.tree.leaves.iter().position(|l| *l == leaf) {
                Some(i) => (i as u64, true),
                None => {
                    s.entries.push(req.body.clone());
                    s.tree.push(&req.body);
                    (s.tree.size() - 1, false)
                }
            };
            let (t, n) = view(s);
            let note = signed(s, &t, n);
            let proof = tamper(s, t.prove_inclusion(index, n));
            let tp = TlogProof {
                extra: None,
                index,
                inclusion_proof: proof.clone(),
                checkpoint: note.clone(),
            };
            ok_json(json!({
                "index": index, "leaf_hash": hash_to_base64(&leaf), "duplicate": duplicate,
                "tree_size": n, "inclusion_proof": b64s(&proof),
                "checkpoint": String::from_utf8(note).unwrap(),
                "tlog_proof": String::from_utf8(tp.to_bytes()).unwrap(),
            }))
        }
        ("POST", "add-batch") => {
            let Ok(entries) = decode_bundle(&req.body) else {
                return error(400, "bad_bundle", "bad bundle framing");
            };
            let entries: Vec<Vec<u8>> = entries.iter().map(|e| e.to_vec()).collect();
            let mut idx = Vec::new();
            for e in &entries {
                s.entries.push(e.clone());
                s.tree.push(e);
                idx.push(s.tree.size() - 1);
            }
            let (t, n) = view(s);
            let note = signed(s, &t, n);
            let list: Vec<_> = entries
                .iter()
                .zip(&idx)
                .map(|(e, &i)| {
                    json!({"index": i, "leaf_hash": hash_to_base64(&leaf_hash(e)), "duplicate": false,
                           "inclusion_proof": b64s(&tamper(s, t.prove_inclusion(i, n)))})
                })
                .collect();
            ok_json(
                json!({"tree_size": n, "checkpoint": String::from_utf8(note).unwrap(), "entries": list}),
            )
        }
        ("GET", "proof/consistency") => {
            let (t, n) = view(s);
            let from: u64 = q(req, "from").and_then(|v| v.parse().ok()).unwrap_or(0);
            let to: u64 = q(req, "to").and_then(|v| v.parse().ok()).unwrap_or(n);
            if from > to || to > t.size() {
                return error(422, "invalid", "from > to or beyond the tree");
            }
            let proof = tamper(s, t.prove_consistency(from, to));
            ok_json(
                json!({"from": from, "to": to, "consistency_proof": b64s(&proof),
                           "checkpoint": String::from_utf8(signed(s, &t, to)).unwrap()}),
            )
        }
        ("GET", "proof/tlog-proof") => {
            let (t, n) = view(s);
            let size: u64 = q(req, "tree_size")
                .and_then(|v| v.parse().ok())
                .unwrap_or(n);
            let index = if let Some(i) = q(req, "index") {
                i.parse::<u64>().unwrap_or(u64::MAX)
            } else if let Some(h) = q(req, "leaf_hash") {
                let Ok(h) = hash_from_hex(h) else {
                    return error(400, "bad_request", "bad leaf_hash");
                };
                match t.leaves.iter().position(|l| *l == h) {
                    Some(i) => i as u64,
                    None => return error(404, "not_found", "unknown leaf hash"),
                }
            } else {
                return error(400, "bad_request", "index or leaf_hash required");
            };
            if size > t.size() || index >= size {
                return error(422, "invalid", "index or size outside the tree");
            }
            let tp = TlogProof {
                extra: None,
                index,
                inclusion_proof: tamper(s, t.prove_inclusion(index, size)),
                checkpoint: signed(s, &t, size),
            };
            (200, "text/plain; charset=utf-8", tp.to_bytes())
        }
        ("GET", p) if p.starts_with("tile/") => {
            let Ok(tile) = TilePath::parse(p) else {
                return error(400, "bad_tile_path", "malformed tile path");
            };
            if tile.kind != TileKind::Entries {
                return error(404, "not_found", "hash tiles not served by the fake");
            }
            let start = tile.index * 256;
            let end = start + u64::from(tile.width);
            if end > s.entries.len() as u64 {
                return error(404, "not_found", "tile beyond the tree");
            }
            let data = encode_bundle(
                s.entries[start as usize..end as usize]
                    .iter()
                    .map(|e| e.as_slice()),
            )
            .unwrap();
            (200, "application/octet-stream", data)
        }
        _ => error(404, "not_found", "no such endpoint"),
    }
}
