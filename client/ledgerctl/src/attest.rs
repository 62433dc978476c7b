//! Witness quorum and time-stamp checks for `checkpoint`, `prove`, `submit` and `verify`:
//! `--policy` (c2sp.org/tlog-policy) requires a quorum of witness cosignatures on the
//! checkpoint, `--tsa-roots` requires RFC 3161 tokens over the checkpoint's text that
//! chain to those roots.

use std::path::PathBuf;

use clap::Args;
use ledger_client::attestation::{
    verify_attested_proof, AttestationError, AttestedProof, Requirements,
};
use ledger_client::merkle::Hash;
use ledger_client::policy::{Policy, PolicyError};
use ledger_client::timestamp::TsaRoots;
use ledger_client::tlog_proof::TlogProof;
use serde_json::{json, Value};

use crate::failure::{Failure, Result};

#[derive(Args, Default, Clone)]
pub struct AttestArgs {
    /// Trust policy (c2sp.org/tlog-policy): the checkpoint must be cosigned by a quorum of
    /// its witnesses. Its `log` lines are accepted log keys too.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// PEM roots of trusted time-stamping authorities: the proof must carry RFC 3161
    /// tokens over the checkpoint that chain to them.
    #[arg(long, value_name = "FILE")]
    pub tsa_roots: Option<PathBuf>,
}

/// The loaded requirements.
pub struct Loaded {
    pub policy: Option<Policy>,
    pub roots: Option<TsaRoots>,
}

impl AttestArgs {
    pub fn load(&self) -> Result<Loaded> {
        let policy = self
            .policy
            .as_ref()
            .map(|p| {
                Policy::read_file(p)
                    .map_err(|e| Failure::input(format!("--policy {}: {e}", p.display())))
            })
            .transpose()?;
        let roots = self
            .tsa_roots
            .as_ref()
            .map(|p| {
                let pem = std::fs::read(p).map_err(|e| {
                    Failure::input(format!("cannot read --tsa-roots {}: {e}", p.display()))
                })?;
                TsaRoots::from_pem(&pem)
                    .map_err(|e| Failure::input(format!("--tsa-roots {}: {e}", p.display())))
            })
            .transpose()?;
        Ok(Loaded { policy, roots })
    }
}

impl Loaded {
    fn requirements(&self) -> Requirements<'_> {
        Requirements {
            policy: self.policy.as_ref(),
            tsa_roots: self.roots.as_ref(),
        }
    }

    /// Verifies a tlog-proof with everything required. `from_server` decides whether a
    /// malformed proof is the server's fault (exit 3) or the user's input (exit 2).
    pub fn verify(
        &self,
        proof: &TlogProof,
        leaf: &Hash,
        vkeys: &[&str],
        origin: Option<&str>,
        from_server: bool,
        what: &str,
    ) -> Result<AttestedProof> {
        verify_attested_proof(proof, leaf, vkeys, origin, self.requirements()).map_err(|e| {
            let msg = format!("{what}: {e}");
            let input_problem = matches!(&e, AttestationError::Policy(PolicyError::NoLogKeys));
            if input_problem {
                Failure::input(msg)
            } else if e.is_malformed() {
                if from_server {
                    Failure::server(msg)
                } else {
                    Failure::input(msg)
                }
            } else {
                Failure::verification(msg)
            }
        })
    }

    /// Verifies the witness quorum on a signed checkpoint (for `checkpoint --policy`).
    pub fn verify_checkpoint_quorum(
        &self,
        note: &[u8],
        vkeys: &[&str],
    ) -> Result<Vec<(String, u64)>> {
        let Some(p) = &self.policy else {
            return Ok(vec![]);
        };
        p.verify_checkpoint(note, vkeys)
            .map(|v| v.cosigners)
            .map_err(|e| match e {
                PolicyError::Checkpoint(c) if c.is_malformed() => {
                    Failure::server(format!("cosigned checkpoint from the log: {c}"))
                }
                e => Failure::verification(format!("cosigned checkpoint from the log: {e}")),
            })
    }
}

/// One line for people and a JSON object for machines describing what was attested.
pub fn report(a: &AttestedProof) -> (String, Value) {
    let mut human = String::new();
    if !a.cosigners.is_empty() {
        let names: Vec<&str> = a.cosigners.iter().map(|(n, _)| n.as_str()).collect();
        human.push_str(&format!("; cosigned by {}", names.join(", ")));
    }
    for t in &a.timestamps {
        human.push_str(&format!(
            "; time-stamped {} by {}",
            t.gen_time_rfc3339, t.tsa_subject
        ));
    }
    let json = json!({
        "cosigners": a.cosigners.iter().map(|(n, t)| json!({"witness": n, "time": t})).collect::<Vec<_>>(),
        "timestamps": a.timestamps.iter().map(|t| json!({
            "time": t.gen_time_rfc3339, "tsa": t.tsa_subject, "serial": t.serial_hex, "policy": t.policy,
        })).collect::<Vec<_>>(),
    });
    (human, json)
}
