//! SHA-256 of a blob while it streams. Hashing is the limit of every transfer (one core
//! hashes ~1.5 GB/s here), so past the first few MiB it moves to a thread of its own,
//! fed reference-counted chunks: the network and disk copies then run beside it instead
//! of taking turns with it on one worker.

use super::Digest;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use std::task::{ready, Context, Poll};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

/// Below this many bytes a blob is hashed in place: a thread hop would cost more.
const INLINE_BYTES: u64 = 4 << 20;
/// Chunks queued for the hashing thread; beyond this the producer waits.
const QUEUE: usize = 16;

pub struct Hashing {
    state: State,
}

enum State {
    Inline {
        hasher: Sha256,
        bytes: u64,
    },
    Piped {
        tx: PollSender<Bytes>,
        done: JoinHandle<Sha256>,
    },
    Finished,
}

impl Default for Hashing {
    fn default() -> Self {
        Self {
            state: State::Inline {
                hasher: Sha256::new(),
                bytes: 0,
            },
        }
    }
}

impl Hashing {
    /// Moves the hasher to its own thread once the blob is past `INLINE_BYTES`.
    fn pipe_if_large(&mut self, next: usize) {
        if let State::Inline { bytes, .. } = &self.state {
            if *bytes + next as u64 <= INLINE_BYTES {
                return;
            }
            let State::Inline { mut hasher, .. } =
                std::mem::replace(&mut self.state, State::Finished)
            else {
                return;
            };
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
            let done = tokio::task::spawn_blocking(move || {
                while let Some(chunk) = rx.blocking_recv() {
                    hasher.update(&chunk);
                }
                hasher
            });
            self.state = State::Piped {
                tx: PollSender::new(tx),
                done,
            };
        }
    }

    /// Adds `chunk`; pending while the hashing thread is `QUEUE` chunks behind.
    pub fn poll_update(&mut self, cx: &mut Context<'_>, chunk: &Bytes) -> Poll<()> {
        self.pipe_if_large(chunk.len());
        match &mut self.state {
            State::Inline { hasher, bytes } => {
                hasher.update(chunk);
                *bytes += chunk.len() as u64;
            }
            State::Piped { tx, .. } => {
                // A closed channel means the thread died; `finish` reports it.
                if ready!(tx.poll_reserve(cx)).is_ok() {
                    let _ = tx.send_item(chunk.clone());
                }
            }
            State::Finished => {}
        }
        Poll::Ready(())
    }

    pub async fn update(&mut self, chunk: &Bytes) {
        std::future::poll_fn(|cx| self.poll_update(cx, chunk)).await
    }

    /// The digest of everything added; `None` if the hashing thread failed.
    pub fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Option<Digest>> {
        match &mut self.state {
            State::Inline { .. } => {
                let State::Inline { hasher, .. } =
                    std::mem::replace(&mut self.state, State::Finished)
                else {
                    return Poll::Ready(None);
                };
                Poll::Ready(Some(Digest(hasher.finalize().into())))
            }
            State::Piped { tx, done } => {
                tx.close();
                let hasher = ready!(std::pin::Pin::new(done).poll(cx));
                self.state = State::Finished;
                Poll::Ready(hasher.ok().map(|h| Digest(h.finalize().into())))
            }
            State::Finished => Poll::Ready(None),
        }
    }

    pub async fn finish(mut self) -> Option<Digest> {
        std::future::poll_fn(|cx| self.poll_finish(cx)).await
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn piped_and_inline_hashing_give_the_same_digest() {
        let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
        for chunk in [1000, 65536, 3 << 20] {
            let mut h = Hashing::default();
            for c in data.chunks(chunk) {
                h.update(&Bytes::copy_from_slice(c)).await;
            }
            assert_eq!(
                h.finish().await,
                Some(Digest::of(&data)),
                "chunks of {chunk}"
            );
        }
        let mut small = Hashing::default();
        small.update(&Bytes::from_static(b"abc")).await;
        assert_eq!(small.finish().await, Some(Digest::of(b"abc")));
        assert_eq!(Hashing::default().finish().await, Some(Digest::of(b"")));
    }
}
