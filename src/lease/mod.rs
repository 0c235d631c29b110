//! The rotation lease (DESIGN.md §3 step 4): at most one rotation of a secret at a time across
//! every trigger, every instance and the CLI (I3).
//!
//! A [`Leases`] backend takes the lease of one secret for [`LEASE_SECONDS`]; the rotation keeps
//! it in a [`Holding`], which renews it in the background and says, before each write, whether
//! it is still held. Losing it (renewal refused, or not confirmed for too long) stops the
//! rotation before its next write. Backends: Azure Blob Storage (`blob`, the storage account
//! every Functions app has) and, behind an explicit setting only, one process's memory
//! ([`local`], exact when a single process rotates, as in the demo).

pub mod blob;
pub mod local;
pub mod mark_key;
pub mod storage;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{SecretName, VaultName};
pub use mark_key::MarkKey;

/// How long one lease lasts unless renewed (Blob Storage allows 15–60 s).
pub const LEASE_SECONDS: u32 = 20;

/// How often a held lease is renewed: three chances before it would expire.
pub const RENEW_EVERY: Duration = Duration::from_secs(LEASE_SECONDS as u64 / 3);

/// A lease not confirmed (taken or renewed) for this long counts as lost: it may expire at
/// storage before the next write lands. Confirmations count from when the call was *sent*
/// (storage's 20 s may start any time after that).
const CONFIRMED_FOR: Duration = Duration::from_secs(LEASE_SECONDS as u64 - 5);

/// Kept between the end of a write's allowed time and the lease's possible expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(2);

/// Which secret a lease is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    pub vault: VaultName,
    pub secret: SecretName,
}

impl LeaseKey {
    pub fn new(vault: &VaultName, secret: &SecretName) -> Self {
        Self {
            vault: vault.clone(),
            secret: secret.clone(),
        }
    }

    /// The blob of this secret's lease: `<vault>/<secret>` in lower case (Key Vault's secret
    /// names are case-insensitive, so `Key` and `key` share one lease).
    pub fn blob_name(&self) -> String {
        format!("{}/{}", self.vault, self.secret.as_str().to_ascii_lowercase())
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.vault, self.secret)
    }
}

/// Why a lease could not be taken or kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Another rotation holds it.
    #[error("another rotation holds the lease")]
    Held,
    /// It was held and is not any more (renewal refused, or not confirmed in time).
    #[error("the lease was lost: {0}")]
    Lost(String),
    /// Storage cannot answer for now; a retry can help.
    #[error("{0}")]
    Transient(String),
    /// Storage refuses for good (no access, bad configuration).
    #[error("{0}")]
    Permanent(String),
}

/// A backend that takes leases.
#[async_trait::async_trait]
pub trait Leases: Send + Sync + fmt::Debug {
    /// Takes the lease of one secret for [`LEASE_SECONDS`], or [`LeaseError::Held`].
    async fn acquire(&self, key: &LeaseKey) -> Result<Box<dyn HeldLease>, LeaseError>;

    /// Where the leases live, for logs and status: `in-process`, `blob https://…`.
    fn describe(&self) -> String;

    /// The key of keyflip's mark fingerprints, kept beside the leases (made on first use).
    async fn mark_key(&self) -> Result<MarkKey, LeaseError>;
}

/// One lease a backend gave.
#[async_trait::async_trait]
pub trait HeldLease: Send + Sync + fmt::Debug {
    /// Extends it by [`LEASE_SECONDS`]; [`LeaseError::Lost`] when it is gone or not ours.
    async fn renew(&self) -> Result<(), LeaseError>;

    /// Gives it up.
    async fn release(&self) -> Result<(), LeaseError>;
}

/// When the lease was last confirmed, or why it is lost.
#[derive(Debug)]
enum Standing {
    Confirmed(Instant),
    Lost(String),
}

/// A lease held for one rotation: renewed every [`RENEW_EVERY`] until [`Holding::release`] (or
/// drop, which releases it in the background).
#[derive(Debug)]
pub struct Holding {
    key: LeaseKey,
    lease: Arc<dyn HeldLease>,
    standing: Arc<Mutex<Standing>>,
    renewer: tokio::task::JoinHandle<()>,
    released: bool,
}

impl Holding {
    /// Starts holding a lease just taken by a call sent at `sent`.
    pub fn start(key: LeaseKey, lease: Box<dyn HeldLease>, sent: Instant) -> Self {
        Self::start_renewing_every(key, lease, sent, RENEW_EVERY)
    }

    fn start_renewing_every(
        key: LeaseKey,
        lease: Box<dyn HeldLease>,
        sent: Instant,
        every: Duration,
    ) -> Self {
        let lease: Arc<dyn HeldLease> = Arc::from(lease);
        let standing = Arc::new(Mutex::new(Standing::Confirmed(sent)));
        let renewer = tokio::spawn(renew_until_lost(
            key.clone(),
            lease.clone(),
            standing.clone(),
            every,
        ));
        Self {
            key,
            lease,
            standing,
            renewer,
            released: false,
        }
    }

    /// Whether the lease is still ours, called before each write of the rotation: how long the
    /// write may take and still end before the lease could expire (were no renewal to land).
    pub fn check(&self) -> Result<Duration, LeaseError> {
        let standing = self.standing.lock().unwrap_or_else(|p| p.into_inner());
        match &*standing {
            Standing::Lost(why) => Err(LeaseError::Lost(why.clone())),
            Standing::Confirmed(at) if at.elapsed() >= CONFIRMED_FOR => Err(LeaseError::Lost(format!(
                "it was last confirmed {} s ago, so it may have expired",
                at.elapsed().as_secs()
            ))),
            Standing::Confirmed(at) => Ok(Duration::from_secs(u64::from(LEASE_SECONDS))
                .saturating_sub(at.elapsed())
                .saturating_sub(EXPIRY_MARGIN)),
        }
    }

    /// Stops renewing without giving the lease up: it expires by itself within
    /// [`LEASE_SECONDS`], keeping every other rotation out until then (after a write whose
    /// answer was lost, which may still land).
    pub fn abandon(mut self) {
        self.renewer.abort();
        self.released = true;
    }

    /// Stops renewing and gives the lease up, within `bound`; a failure only delays the next
    /// rotation until the lease expires by itself.
    pub async fn release(mut self, bound: Duration) {
        self.renewer.abort();
        self.released = true;
        match tokio::time::timeout(bound, self.lease.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(lease = %self.key, error = %e, "could not release the lease; it expires by itself within {LEASE_SECONDS} s")
            }
            Err(_) => {
                tracing::warn!(lease = %self.key, "releasing the lease timed out; it expires by itself within {LEASE_SECONDS} s")
            }
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.released {
            return;
        }
        // Dropped without a release (a panic, a cancelled invocation): give it up in the
        // background; if even that fails it expires by itself.
        let lease = self.lease.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), lease.release()).await;
            });
        }
    }
}

async fn renew_until_lost(
    key: LeaseKey,
    lease: Arc<dyn HeldLease>,
    standing: Arc<Mutex<Standing>>,
    every: Duration,
) {
    let mut pause = every;
    loop {
        tokio::time::sleep(pause).await;
        let sent = Instant::now();
        let answer = tokio::time::timeout(every, lease.renew()).await;
        let mut now = standing.lock().unwrap_or_else(|p| p.into_inner());
        match answer {
            Ok(Ok(())) => {
                *now = Standing::Confirmed(sent);
                pause = every;
            }
            Ok(Err(LeaseError::Lost(why))) => {
                tracing::warn!(lease = %key, reason = %why, "the lease was lost; the rotation stops before its next write");
                *now = Standing::Lost(why);
                return;
            }
            Ok(Err(LeaseError::Held)) => {
                *now = Standing::Lost("another rotation holds it now".to_string());
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %key, error = %e, "renewing the lease failed; trying again");
                pause = Duration::from_secs(1).min(every);
            }
            Err(_) => {
                tracing::warn!(lease = %key, "renewing the lease timed out; trying again");
                pause = Duration::from_secs(1).min(every);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, Default)]
    struct Scripted {
        renewals: AtomicU32,
        lose_after: u32,
        releases: AtomicU32,
    }

    #[async_trait::async_trait]
    impl HeldLease for Arc<Scripted> {
        async fn renew(&self) -> Result<(), LeaseError> {
            let n = self.renewals.fetch_add(1, Ordering::SeqCst) + 1;
            match n > self.lose_after {
                true => Err(LeaseError::Lost(
                    "storage says the lease id does not match".into(),
                )),
                false => Ok(()),
            }
        }
        async fn release(&self) -> Result<(), LeaseError> {
            self.releases.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn key() -> LeaseKey {
        LeaseKey::new(
            &VaultName::parse("kv-one").unwrap(),
            &SecretName::parse("OpenAI-Key").unwrap(),
        )
    }

    #[test]
    fn the_blob_of_a_secret_is_its_vault_and_lower_case_name() {
        assert_eq!(key().blob_name(), "kv-one/openai-key");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_renewed_while_held_and_released_at_the_end() {
        let lease = Arc::new(Scripted {
            lose_after: u32::MAX,
            ..Default::default()
        });
        let holding = Holding::start(key(), Box::new(lease.clone()), Instant::now());
        tokio::time::sleep(RENEW_EVERY * 3 + Duration::from_millis(10)).await;
        // Confirmed by the renewal sent a moment ago: almost a whole lease left for a write.
        let left = holding.check().unwrap();
        assert!(
            left > Duration::from_secs(15) && left <= Duration::from_secs(18),
            "{left:?}"
        );
        assert_eq!(lease.renewals.load(Ordering::SeqCst), 3);
        holding.release(Duration::from_secs(1)).await;
        assert_eq!(lease.releases.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_renewal_loses_the_lease_before_the_next_write() {
        let lease = Arc::new(Scripted {
            lose_after: 1,
            ..Default::default()
        });
        let holding = Holding::start(key(), Box::new(lease.clone()), Instant::now());
        tokio::time::sleep(RENEW_EVERY + Duration::from_millis(10)).await;
        assert!(holding.check().is_ok());
        tokio::time::sleep(RENEW_EVERY).await;
        let lost = holding.check().unwrap_err();
        assert!(
            matches!(lost, LeaseError::Lost(ref m) if m.contains("does not match")),
            "{lost:?}"
        );
    }

    #[derive(Debug)]
    struct Hanging;

    #[async_trait::async_trait]
    impl HeldLease for Hanging {
        async fn renew(&self) -> Result<(), LeaseError> {
            std::future::pending().await
        }
        async fn release(&self) -> Result<(), LeaseError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_whose_renewals_never_answer_counts_as_lost_before_it_expires() {
        let holding = Holding::start(key(), Box::new(Hanging), Instant::now());
        tokio::time::sleep(CONFIRMED_FOR - Duration::from_secs(1)).await;
        assert!(holding.check().is_ok());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(matches!(holding.check(), Err(LeaseError::Lost(_))));
        // Releasing is bounded too.
        holding.release(Duration::from_secs(1)).await;
    }
}
