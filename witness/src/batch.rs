//! Batch verification of the log signatures of concurrent add-checkpoint requests.
//!
//! Every request costs one Ed25519 verification of the log's signature, the largest part
//! of the witness's CPU per request (BENCHMARKS.md). `ed25519_dalek::verify_batch` checks
//! n signatures in one multiscalar multiplication for about half the cost of n single
//! verifications once n ≥ 8. The batches come from the load itself, with no waiting: a
//! request queues its signatures on the queue of the thread it runs on (each HTTP thread
//! runs one single-threaded runtime) and yields once; the other requests of that runtime
//! that are ready, or become ready at the I/O poll that follows, queue theirs meanwhile.
//! The first one to run again verifies everything queued and answers all of them. At low
//! load the batch is the request alone, verified singly as before.
//!
//! A batch that fails is verified again signature by signature, so that one bad signature
//! does not refuse its neighbours. A request whose signature does not verify singly is
//! answered by the caller's exact path (`LogKeys::verify`), which names the failure.
//!
//! **Caveat: batch and single verification differ at the edges.** A single `verify`
//! (ed25519-dalek's, which `signed_note` uses) is cofactorless: it recomputes R and
//! compares encodings. The batch equation is checked on the combined point, so a
//! signature whose error is a small-order (torsion) point, or whose R is a non-canonical
//! encoding of a point, can pass the batch while failing singly. Making such a signature
//! for a given text takes the log's private key (or a log key that itself has a torsion
//! component, which again only the key's maker could choose), so it changes nothing for
//! anyone but the log, which could as well sign validly. The witness's guarantee, never to
//! cosign a checkpoint inconsistent with one it cosigned, rests on the consistency checks,
//! not on which of two equations the log's signature passes. The random coefficients of
//! the batch are derived from a transcript of every signature in it (ed25519-dalek's
//! deterministic batching), so signatures submitted together by others cannot be chosen to
//! cancel a bad one.

use crate::metrics::Metrics;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use parking_lot::Mutex;
use std::sync::Arc;

/// Most requests verified by one `verify_batch` call: beyond ~32 signatures the
/// multiscalar multiplication gains nothing more per signature on this code.
const MAX_BATCH: usize = 32;

struct Item {
    /// The signed message: the checkpoint's note text.
    message: Vec<u8>,
    signatures: Vec<(VerifyingKey, Signature)>,
    reply: tokio::sync::oneshot::Sender<bool>,
}

type Queue = Arc<Mutex<Vec<Item>>>;

thread_local! {
    static QUEUE: Queue = Arc::default();
}

/// Whether every signature in `signatures` verifies over `message`, possibly checked
/// together with those of other requests running on this thread. `true` is only ever
/// answered for signatures that verified, singly or in a batch.
pub async fn verify(
    message: Vec<u8>,
    signatures: Vec<(VerifyingKey, Signature)>,
    metrics: &Metrics,
) -> bool {
    let (reply, rx) = tokio::sync::oneshot::channel();
    // Keep the queue itself: on a multi-threaded runtime this task may resume elsewhere.
    let queue = QUEUE.with(Arc::clone);
    queue.lock().push(Item {
        message,
        signatures,
        reply,
    });
    // Let the other ready requests of this runtime queue theirs.
    tokio::task::yield_now().await;
    let items = std::mem::take(&mut *queue.lock());
    if !items.is_empty() {
        metrics.verify_batch.observe(items.len() as f64);
        verify_items(items);
    }
    // Sent by now, by this task or by the one that took this item (which answers every
    // item it takes before it returns). A dropped sender means no answer: not verified.
    rx.await.unwrap_or(false)
}

/// The cofactorless single check, the one `signed_note::StandardVerifier` makes.
fn verify_single(item: &Item) -> bool {
    item.signatures
        .iter()
        .all(|(key, sig)| key.verify(&item.message, sig).is_ok())
}

fn verify_items(mut items: Vec<Item>) {
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(MAX_BATCH));
        let chunk = std::mem::replace(&mut items, rest);
        if chunk.len() == 1 {
            for item in chunk {
                let ok = verify_single(&item);
                let _ = item.reply.send(ok);
            }
            continue;
        }
        let mut messages = Vec::new();
        let mut signatures = Vec::new();
        let mut keys = Vec::new();
        for item in &chunk {
            for (key, sig) in &item.signatures {
                messages.push(item.message.as_slice());
                signatures.push(*sig);
                keys.push(*key);
            }
        }
        let all = ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
        for item in chunk {
            let ok = all || verify_single(&item);
            let _ = item.reply.send(ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn item(sk: &SigningKey, msg: &[u8], good: bool) -> (Item, tokio::sync::oneshot::Receiver<bool>) {
        let mut sig = sk.sign(msg);
        if !good {
            sig = sk.sign(b"something else");
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        (
            Item {
                message: msg.to_vec(),
                signatures: vec![(sk.verifying_key(), sig)],
                reply,
            },
            rx,
        )
    }

    #[test]
    fn a_bad_signature_fails_alone() {
        let mut rng = rand::rngs::OsRng;
        for n in [1, 2, 5, MAX_BATCH, MAX_BATCH + 3] {
            for bad in [None, Some(0), Some(n - 1)] {
                let (items, rxs): (Vec<_>, Vec<_>) = (0..n)
                    .map(|i| {
                        let sk = SigningKey::generate(&mut rng);
                        item(&sk, format!("m{i}\n").as_bytes(), Some(i) != bad)
                    })
                    .unzip();
                verify_items(items);
                for (i, mut rx) in rxs.into_iter().enumerate() {
                    assert_eq!(rx.try_recv().unwrap(), Some(i) != bad, "n={n} bad={bad:?} i={i}");
                }
            }
        }
    }

    #[tokio::test]
    async fn concurrent_requests_are_batched_and_answered() {
        let metrics = Metrics::new();
        let mut rng = rand::rngs::OsRng;
        let keys: Vec<SigningKey> = (0..10).map(|_| SigningKey::generate(&mut rng)).collect();
        let futs = keys.iter().enumerate().map(|(i, sk)| {
            let msg = format!("m{i}\n").into_bytes();
            let sig = if i == 3 { sk.sign(b"x") } else { sk.sign(&msg) };
            let m = &metrics;
            async move { verify(msg, vec![(sk.verifying_key(), sig)], m).await }
        });
        let got = futures_join_all(futs).await;
        let want: Vec<bool> = (0..10).map(|i| i != 3).collect();
        assert_eq!(got, want);
    }

    /// Polls the futures concurrently on this task (no extra dependency).
    async fn futures_join_all<F: std::future::Future<Output = bool>>(
        futs: impl Iterator<Item = F>,
    ) -> Vec<bool> {
        let mut futs: Vec<_> = futs.map(Box::pin).collect();
        let mut out: Vec<Option<bool>> = vec![None; futs.len()];
        std::future::poll_fn(|cx| {
            for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
                if o.is_none() {
                    if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                        *o = Some(v);
                    }
                }
            }
            if out.iter().all(Option::is_some) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        out.into_iter().map(Option::unwrap).collect()
    }
}
