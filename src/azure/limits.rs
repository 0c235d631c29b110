//! Client-side limits on the calls keyflip makes to Key Vault and Resource Manager, so a
//! sweep of thousands of secrets runs at the speed Azure allows instead of into its throttling.
//!
//! It owns [`AzureLimits`] (the limits and their state, per vault and per subscription) and
//! [`LimitedClient`], the HTTP client every Azure SDK client sends through: before each attempt
//! (retries included) it waits for its turn and a token of the call's kind, then a slot, and after the answer
//! it learns from it. It knows no secret and no rotation; it never reads a body.
//!
//! What is limited, from `../shared/reference/queues-flex-and-limits.md` §5:
//! - **Key Vault, per vault** (a host of KEYFLIP_VAULTS), per 10 seconds: 300 secret creations
//!   (PUT, a new version) and 4,000 other transactions (GET, list pages, PATCH). A sliding
//!   window of the last 10 s at [`HEADROOM`] of each figure, so no 10 s window ever exceeds it,
//!   however Key Vault counts. Key Vault answers 429 without `Retry-After`: the vault's kind is
//!   then held back for a second, doubling to 16 s while 429s go on (the back-off Key Vault
//!   documents).
//! - **Resource Manager, per subscription** (`/subscriptions/{id}/…` on KEYFLIP_ARM_ENDPOINT):
//!   token buckets of 250 reads refilled at 25/s and 200 writes (PUT, PATCH, POST actions such
//!   as listKeys and regenerateKey) refilled at 10/s, deletes as writes. Until Azure has said
//!   otherwise a bucket believes in [`HEADROOM`] of each figure. Every answer's
//!   `x-ms-ratelimit-remaining-subscription-reads|writes` (what Azure says is left, another
//!   client may share the bucket), less the calls still in flight and one spare, lowers it; only
//!   the answer to the last call sent raises it (never above the documented size), since
//!   answers overtake each other and an older count would include tokens later calls spent. A
//!   429's `Retry-After` holds the kind back until then.
//! - **At most [`MAX_IN_FLIGHT`] calls at once** per vault and per subscription (half the default
//!   KEYFLIP_CONCURRENCY: most rotations are waiting for another call, or for the sweep).
//! - **First come, first served**: the calls of one kind to one target take their tokens in the
//!   order they asked (a fair queue). Waiters that each slept and raced for the next token let
//!   late arrivals overtake them, and under a saturated bucket some rotations starved past
//!   their budget.
//!
//! Other hosts (the token endpoint, storage, data planes) pass through unlimited. The jittered
//! retry itself is the pipeline's ([`super::transport::retry_options`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::http::headers::{HeaderName, Headers, RETRY_AFTER};
use azure_core::http::{AsyncRawResponse, HttpClient, Method, Request, StatusCode};
use tokio::sync::{Mutex as Queue, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::Url;

/// Calls in flight at once per vault and per subscription.
pub const MAX_IN_FLIGHT: usize = 32;

/// The share of each documented limit keyflip allows itself.
pub const HEADROOM: f64 = 0.95;

/// Key Vault's window.
const VAULT_WINDOW: Duration = Duration::from_secs(10);
/// Key Vault, per vault per 10 s: secret creations, and every other transaction.
const VAULT_CREATES: usize = 300;
const VAULT_OTHERS: usize = 4000;
/// Resource Manager, per subscription: bucket sizes and refill per second.
const ARM_READS: (f64, f64) = (250.0, 25.0);
const ARM_WRITES: (f64, f64) = (200.0, 10.0);
/// Hold-back after a Key Vault 429 (no `Retry-After`): from 1 s, doubling to 16 s.
const VAULT_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(16));
/// The longest `Retry-After` obeyed for the whole subscription.
const MAX_HOLD: Duration = Duration::from_secs(60);

const REMAINING_READS: HeaderName = HeaderName::from_static("x-ms-ratelimit-remaining-subscription-reads");
const REMAINING_WRITES: HeaderName = HeaderName::from_static("x-ms-ratelimit-remaining-subscription-writes");

/// Which limit a call counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Vault(String),
    Subscription(String),
}

/// The kind of a call, as each service counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Key Vault: a secret creation (PUT). Resource Manager: PUT, PATCH, POST, DELETE.
    Write,
    /// Key Vault: everything else. Resource Manager: GET, HEAD.
    Read,
}

/// The limits of every vault and subscription keyflip calls, and how much of each is used.
#[derive(Debug)]
pub struct AzureLimits {
    vault_hosts: Vec<String>,
    arm_host: String,
    state: Mutex<HashMap<Target, Limiter>>,
}

/// Counts of what the limits did, for the bench and the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// Calls that had to wait for a token or a slot.
    pub delayed: u64,
    /// 429 answers received.
    pub throttled: u64,
}

impl AzureLimits {
    /// Limits for the vaults at `vault_urls` and Resource Manager at `arm_endpoint`.
    pub fn new<'a>(vault_urls: impl IntoIterator<Item = &'a Url>, arm_endpoint: &Url) -> Self {
        let host = |url: &Url| url.host_str().unwrap_or_default().to_ascii_lowercase();
        Self {
            vault_hosts: vault_urls.into_iter().map(host).collect(),
            arm_host: host(arm_endpoint),
            state: Mutex::new(HashMap::new()),
        }
    }

    /// What the limits did so far, over every vault and subscription.
    pub fn stats(&self) -> LimitStats {
        let state = self.lock();
        state.values().fold(LimitStats::default(), |mut total, limiter| {
            total.delayed += limiter.stats.delayed;
            total.throttled += limiter.stats.throttled;
            total
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Target, Limiter>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The limit a call to `url` with `method` counts against, if any.
    fn classify(&self, url: &Url, method: Method) -> Option<(Target, Kind)> {
        let host = url.host_str()?.to_ascii_lowercase();
        if self.vault_hosts.contains(&host) {
            let kind = match method {
                Method::Put => Kind::Write,
                _ => Kind::Read,
            };
            return Some((Target::Vault(host), kind));
        }
        if host == self.arm_host {
            let mut segments = url.path_segments()?;
            let subscription = match (segments.next(), segments.next()) {
                (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") && !id.is_empty() => {
                    id.to_ascii_lowercase()
                }
                _ => return None,
            };
            let kind = match method {
                Method::Get | Method::Head => Kind::Read,
                _ => Kind::Write,
            };
            return Some((Target::Subscription(subscription), kind));
        }
        None
    }

    /// Waits until the call may be sent: its turn among the calls of its kind, a token, then a
    /// slot (so calls waiting for tokens of one kind, or held back by a 429, never hold the
    /// slots other kinds need). What it gives holds the slot (`None` only if the semaphore were
    /// closed; none ever is) and counts the call in flight until dropped, also when the call is
    /// dropped while it waits for its slot.
    async fn admit<'a>(&'a self, target: &'a Target, kind: Kind) -> Admitted<'a> {
        let (slots, queue) = {
            let mut state = self.lock();
            let limiter = state
                .entry(target.clone())
                .or_insert_with(|| Limiter::new(target));
            (limiter.slots.clone(), limiter.queue(kind))
        };
        let mut delayed = false;
        let sent = {
            // Tokio's mutex is fair: whoever holds it is next for a token, the others queue in
            // order.
            let _turn = match queue.try_lock() {
                Ok(turn) => turn,
                Err(_) => {
                    delayed = true;
                    queue.lock().await
                }
            };
            loop {
                let wait = {
                    let mut state = self.lock();
                    let limiter = state
                        .entry(target.clone())
                        .or_insert_with(|| Limiter::new(target));
                    let wait = limiter.take(kind, Instant::now());
                    let sent = match limiter.paces.get(&kind) {
                        Some(Pace::Bucket(bucket)) => bucket.sent,
                        _ => 0,
                    };
                    (wait, sent)
                };
                match wait {
                    (None, sent) => break sent,
                    (Some(wait), _) => {
                        delayed = true;
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        };
        // From here the call counts as in flight, until what this gives is dropped.
        let in_flight = InFlight {
            limits: self,
            target,
            kind,
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                delayed = true;
                slots.acquire_owned().await.ok()
            }
        };
        if delayed && let Some(limiter) = self.lock().get_mut(target) {
            limiter.stats.delayed += 1;
        }
        Admitted {
            _permit: permit,
            _in_flight: in_flight,
            sent,
        }
    }

    /// A call admitted with a token of `kind` has ended: answered, failed, or dropped (a
    /// timeout cancels the call mid-way), so it is no longer in flight.
    fn settle(&self, target: &Target, kind: Kind) {
        if let Some(Pace::Bucket(bucket)) = self
            .lock()
            .get_mut(target)
            .and_then(|limiter| limiter.paces.get_mut(&kind))
        {
            bucket.answered();
        }
    }

    /// Learns from an answer (`None`: the call failed without one): a 429 holds the kind back,
    /// Resource Manager's remaining count sets the bucket.
    fn observe(&self, target: &Target, kind: Kind, sent: u64, answer: Option<(StatusCode, &Headers)>) {
        let mut state = self.lock();
        let Some(limiter) = state.get_mut(target) else {
            return;
        };
        let now = Instant::now();
        let Some((status, headers)) = answer else {
            return;
        };
        if status == StatusCode::TooManyRequests {
            limiter.stats.throttled += 1;
            let hold = match target {
                Target::Subscription(_) => headers
                    .get_optional_str(&RETRY_AFTER)
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(VAULT_BACKOFF.0, Duration::from_secs)
                    .min(MAX_HOLD),
                Target::Vault(_) => limiter.next_backoff(kind),
            };
            limiter.hold(kind, now + hold);
            return;
        }
        limiter.backoff.remove(&kind);
        let remaining = match kind {
            Kind::Read => &REMAINING_READS,
            Kind::Write => &REMAINING_WRITES,
        };
        if let Some(left) = headers
            .get_optional_str(remaining)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|left| left.is_finite())
            && let Some(Pace::Bucket(bucket)) = limiter.paces.get_mut(&kind)
        {
            bucket.azure_says(left, sent, now);
        }
    }
}

/// One vault's or subscription's state.
#[derive(Debug)]
struct Limiter {
    slots: Arc<Semaphore>,
    paces: HashMap<Kind, Pace>,
    /// No call of the kind before this instant (after a 429).
    held: HashMap<Kind, Instant>,
    /// The next hold-back after a Key Vault 429.
    backoff: HashMap<Kind, Duration>,
    /// The queue of calls of each kind waiting for a token, in the order they asked.
    queues: HashMap<Kind, Arc<Queue<()>>>,
    stats: LimitStats,
}

impl Limiter {
    fn new(target: &Target) -> Self {
        let paces = match target {
            Target::Vault(_) => HashMap::from([
                (
                    Kind::Write,
                    Pace::Window(Window::new(allowed(VAULT_CREATES), VAULT_WINDOW)),
                ),
                (
                    Kind::Read,
                    Pace::Window(Window::new(allowed(VAULT_OTHERS), VAULT_WINDOW)),
                ),
            ]),
            Target::Subscription(_) => HashMap::from([
                (Kind::Read, Pace::Bucket(Bucket::new(ARM_READS))),
                (Kind::Write, Pace::Bucket(Bucket::new(ARM_WRITES))),
            ]),
        };
        Self {
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            paces,
            held: HashMap::new(),
            backoff: HashMap::new(),
            queues: HashMap::new(),
            stats: LimitStats::default(),
        }
    }

    /// The queue for a token of `kind`.
    fn queue(&mut self, kind: Kind) -> Arc<Queue<()>> {
        self.queues.entry(kind).or_default().clone()
    }

    /// Takes a token of `kind` now (`None`), or says how long to wait before asking again.
    fn take(&mut self, kind: Kind, now: Instant) -> Option<Duration> {
        if let Some(until) = self.held.get(&kind).copied() {
            if until > now {
                return Some(until - now);
            }
            self.held.remove(&kind);
        }
        self.paces.get_mut(&kind).and_then(|pace| pace.take(now))
    }

    fn hold(&mut self, kind: Kind, until: Instant) {
        let held = self.held.entry(kind).or_insert(until);
        *held = (*held).max(until);
    }

    fn next_backoff(&mut self, kind: Kind) -> Duration {
        let next = self.backoff.entry(kind).or_insert(VAULT_BACKOFF.0);
        let now = *next;
        *next = (*next * 2).min(VAULT_BACKOFF.1);
        now
    }
}

/// The documented figure less the headroom, at least 1.
fn allowed(limit: usize) -> usize {
    let scaled = (limit as f64 * HEADROOM).floor();
    if scaled < 1.0 { 1 } else { scaled as usize }
}

/// How one kind of call is paced.
#[derive(Debug)]
enum Pace {
    Window(Window),
    Bucket(Bucket),
}

impl Pace {
    fn take(&mut self, now: Instant) -> Option<Duration> {
        match self {
            Pace::Window(window) => window.take(now),
            Pace::Bucket(bucket) => bucket.take(now),
        }
    }
}

/// At most `limit` calls in any `span`: the send times of the last `limit` calls.
#[derive(Debug)]
struct Window {
    limit: usize,
    span: Duration,
    sent: VecDeque<Instant>,
}

impl Window {
    fn new(limit: usize, span: Duration) -> Self {
        Self {
            limit: limit.max(1),
            span,
            sent: VecDeque::new(),
        }
    }

    fn take(&mut self, now: Instant) -> Option<Duration> {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.span)
        {
            self.sent.pop_front();
        }
        if self.sent.len() < self.limit {
            self.sent.push_back(now);
            return None;
        }
        let oldest = self.sent.front().copied().unwrap_or(now);
        Some(
            (oldest + self.span)
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
        )
    }
}

/// A token bucket of Azure's documented `capacity`, refilled at [`HEADROOM`] of its rate up to
/// [`HEADROOM`] of its size: only Azure's own remaining count takes it above that.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    /// What refilling alone may reach.
    believed: f64,
    per_second: f64,
    tokens: f64,
    at: Instant,
    /// Calls that took a token and have no answer yet.
    in_flight: usize,
    /// Calls that took a token, ever: each call's number.
    sent: u64,
    /// Calls answered (or failed), ever; and how many had been when the last call took its
    /// token.
    settled: u64,
    settled_at_last_send: u64,
}

impl Bucket {
    fn new((capacity, per_second): (f64, f64)) -> Self {
        let believed = (capacity * HEADROOM).floor().max(1.0);
        Self {
            capacity,
            believed,
            per_second: per_second * HEADROOM,
            tokens: believed,
            at: Instant::now(),
            in_flight: 0,
            sent: 0,
            settled: 0,
            settled_at_last_send: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        if self.tokens < self.believed {
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.believed);
        }
        self.at = now;
    }

    fn take(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        // The tolerance absorbs rounding: a caller that waited the time asked for gets its token.
        if self.tokens + 1e-9 >= 1.0 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            self.in_flight += 1;
            self.sent += 1;
            self.settled_at_last_send = self.settled;
            return None;
        }
        let missing = 1.0 - self.tokens;
        Some(Duration::from_secs_f64(missing / self.per_second).max(Duration::from_millis(1)))
    }

    /// A call that took a token was answered (or failed).
    fn answered(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.settled += 1;
    }

    /// Azure says `left` calls remain in its bucket, in its answer to the call numbered `sent`:
    /// less the calls still in flight (Azure may not have counted them yet) and one spare, it is
    /// always believed when less than the local count. More only from the answer to the last
    /// call sent, since answers overtake each other and an older one would count tokens that
    /// later calls already spent; and then also less the calls answered while that one was in
    /// flight, since Azure may have counted them after it.
    fn azure_says(&mut self, left: f64, sent: u64, now: Instant) {
        self.refill(now);
        let usable = |uncounted: u64| (left - uncounted as f64 - 1.0).clamp(0.0, self.capacity);
        let in_flight = self.in_flight as u64;
        if sent == self.sent {
            // This call's own answer is among those settled since it was sent.
            let overtaken = (self.settled - self.settled_at_last_send).saturating_sub(1);
            self.tokens = usable(in_flight + overtaken);
        } else if usable(in_flight) < self.tokens {
            self.tokens = usable(in_flight);
        }
    }
}

/// A call admitted: its slot, its count in flight, and its place among the calls sent with a
/// token of its bucket (which answer is the last call's, [`Bucket::azure_says`]).
struct Admitted<'a> {
    _permit: Option<OwnedSemaphorePermit>,
    _in_flight: InFlight<'a>,
    sent: u64,
}

/// A call in flight: dropping it settles the call in its bucket, also when the call's future
/// is dropped before an answer.
struct InFlight<'a> {
    limits: &'a AzureLimits,
    target: &'a Target,
    kind: Kind,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.limits.settle(self.target, self.kind);
    }
}

/// The HTTP client every Azure SDK client sends through: the shared reqwest client, with
/// [`AzureLimits`] applied to every attempt.
#[derive(Debug, Clone)]
pub struct LimitedClient {
    inner: reqwest::Client,
    limits: Arc<AzureLimits>,
}

impl LimitedClient {
    pub fn new(inner: reqwest::Client, limits: Arc<AzureLimits>) -> Self {
        Self { inner, limits }
    }
}

#[async_trait::async_trait]
impl HttpClient for LimitedClient {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let Some((target, kind)) = self.limits.classify(request.url(), request.method()) else {
            return self.inner.execute_request(request).await;
        };
        // In flight until this is dropped, however the call ends.
        let admitted = self.limits.admit(&target, kind).await;
        let answer = self.inner.execute_request(request).await;
        let sent = admitted.sent;
        drop(admitted);
        let seen = answer.as_ref().ok().map(|r| (r.status(), r.headers()));
        self.limits.observe(&target, kind, sent, seen);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AzureLimits {
        let vault = Url::parse("https://kv1.vault.azure.net/").unwrap();
        AzureLimits::new([&vault], &Url::parse("https://management.azure.com").unwrap())
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    /// The tokens and calls in flight of a subscription's write bucket.
    fn write_bucket(l: &AzureLimits, sub: &Target) -> (f64, usize) {
        let state = l.lock();
        let Some(Pace::Bucket(bucket)) = state.get(sub).unwrap().paces.get(&Kind::Write) else {
            panic!("writes are a bucket");
        };
        (bucket.tokens, bucket.in_flight)
    }

    #[test]
    fn calls_are_classified_as_each_service_counts_them() {
        let l = limits();
        let vault = Target::Vault("kv1.vault.azure.net".into());
        assert_eq!(
            l.classify(&url("https://KV1.vault.azure.net/secrets/a"), Method::Put),
            Some((vault.clone(), Kind::Write))
        );
        assert_eq!(
            l.classify(&url("https://kv1.vault.azure.net/secrets/a/v"), Method::Patch),
            Some((vault.clone(), Kind::Read)),
            "PATCH is one of Key Vault's 'other transactions'"
        );
        assert_eq!(
            l.classify(&url("https://kv1.vault.azure.net/secrets"), Method::Get),
            Some((vault, Kind::Read))
        );
        let sub = Target::Subscription("3f2a1b4c".into());
        let arm = "https://management.azure.com/subscriptions/3F2A1B4C/resourceGroups/r/providers/Microsoft.CognitiveServices/accounts/a";
        assert_eq!(
            l.classify(&url(&format!("{arm}/regenerateKey")), Method::Post),
            Some((sub.clone(), Kind::Write))
        );
        assert_eq!(l.classify(&url(arm), Method::Get), Some((sub, Kind::Read)));
        assert_eq!(
            l.classify(&url("https://management.azure.com/providers/x"), Method::Get),
            None
        );
        assert_eq!(
            l.classify(&url("https://kv2.vault.azure.net/secrets"), Method::Get),
            None
        );
        assert_eq!(
            l.classify(&url("https://login.microsoftonline.com/t"), Method::Post),
            None
        );
    }

    #[test]
    fn a_window_never_admits_more_than_its_limit_in_any_span() {
        let start = Instant::now();
        let mut window = Window::new(3, Duration::from_secs(10));
        for _ in 0..3 {
            assert_eq!(window.take(start), None);
        }
        assert_eq!(window.take(start), Some(Duration::from_secs(10)));
        let later = start + Duration::from_secs(4);
        assert_eq!(window.take(later), Some(Duration::from_secs(6)));
        assert_eq!(window.take(start + Duration::from_secs(10)), None);
    }

    #[test]
    fn a_bucket_bursts_then_refills_at_its_rate_and_believes_azure_s_remaining_count() {
        let mut bucket = Bucket::new((4.0, 2.0));
        let now = bucket.at;
        assert_eq!(bucket.believed, 3.0, "95% of 4, rounded down");
        for _ in 0..3 {
            assert_eq!(bucket.take(now), None);
        }
        let wait = bucket.take(now).unwrap();
        assert!((wait.as_secs_f64() - 1.0 / 1.9).abs() < 1e-6, "{wait:?}");
        assert_eq!(bucket.take(now + wait), None);
        let mut shared = Bucket::new((200.0, 10.0));
        let now = shared.at;
        shared.azure_says(0.0, 0, now);
        assert!(shared.take(now).is_some(), "Azure says none are left");
    }

    #[test]
    fn azure_s_remaining_count_lowers_the_bucket_and_only_the_last_call_s_answer_raises_it() {
        let mut bucket = Bucket::new((200.0, 10.0));
        let now = bucket.at;
        assert_eq!(bucket.tokens, 190.0, "95% until Azure says otherwise");
        for _ in 0..5 {
            assert_eq!(bucket.take(now), None);
        }
        assert_eq!(bucket.sent, 5);
        // Call 2 is answered first, then call 5 (the last sent), then call 1 (overtaken).
        bucket.answered();
        bucket.azure_says(150.0, 2, now);
        assert_eq!(
            bucket.tokens,
            150.0 - 4.0 - 1.0,
            "four still in flight, one spare"
        );
        bucket.azure_says(199.0, 2, now);
        assert_eq!(
            bucket.tokens, 145.0,
            "an answer to an earlier call never raises it"
        );
        bucket.answered();
        bucket.azure_says(190.0, 5, now);
        assert_eq!(
            bucket.tokens,
            190.0 - 3.0 - 1.0 - 1.0,
            "the last call's answer does: less three in flight, call 2 answered meanwhile (Azure may have counted it after call 5), one spare"
        );
        bucket.answered();
        bucket.azure_says(199.0, 1, now);
        assert_eq!(
            bucket.tokens, 185.0,
            "an overtaken answer counts tokens spent since"
        );
        bucket.azure_says(5000.0, 5, now);
        assert_eq!(bucket.tokens, 200.0, "never above the documented size");
        bucket.tokens = 100.0;
        bucket.refill(now + Duration::from_secs(100));
        assert_eq!(bucket.tokens, 190.0, "refilling alone reaches 95%");
        for _ in 0..3 {
            bucket.answered();
        }
        assert_eq!(bucket.in_flight, 0, "never below zero");
    }

    #[tokio::test(start_paused = true)]
    async fn a_vault_429_holds_its_kind_back_doubling_and_a_success_resets_it() {
        let l = limits();
        let vault = Target::Vault("kv1.vault.azure.net".into());
        drop(l.admit(&vault, Kind::Read).await);
        l.observe(
            &vault,
            Kind::Read,
            0,
            Some((StatusCode::TooManyRequests, &Headers::new())),
        );
        let start = Instant::now();
        drop(l.admit(&vault, Kind::Read).await);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        drop(l.admit(&vault, Kind::Write).await);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "writes are not held back"
        );
        l.observe(
            &vault,
            Kind::Read,
            0,
            Some((StatusCode::TooManyRequests, &Headers::new())),
        );
        let again = Instant::now();
        drop(l.admit(&vault, Kind::Read).await);
        assert_eq!(again.elapsed(), Duration::from_secs(2));
        l.observe(&vault, Kind::Read, 0, Some((StatusCode::Ok, &Headers::new())));
        l.observe(
            &vault,
            Kind::Read,
            0,
            Some((StatusCode::TooManyRequests, &Headers::new())),
        );
        let reset = Instant::now();
        drop(l.admit(&vault, Kind::Read).await);
        assert_eq!(reset.elapsed(), Duration::from_secs(1));
        assert_eq!(l.stats().throttled, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_arm_429_holds_the_subscription_for_its_retry_after() {
        let l = limits();
        let sub = Target::Subscription("s".into());
        drop(l.admit(&sub, Kind::Write).await);
        let mut headers = Headers::new();
        headers.insert(RETRY_AFTER, "7");
        l.observe(
            &sub,
            Kind::Write,
            1,
            Some((StatusCode::TooManyRequests, &headers)),
        );
        let start = Instant::now();
        drop(l.admit(&sub, Kind::Write).await);
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[test]
    fn a_call_dropped_before_its_answer_is_no_longer_in_flight() {
        let l = limits();
        let sub = Target::Subscription("s".into());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for _ in 0..3 {
            let admitted = runtime.block_on(l.admit(&sub, Kind::Write));
            // The call's future is dropped here (a timeout), with no answer to observe.
            drop(admitted);
        }
        let mut headers = Headers::new();
        headers.insert(REMAINING_WRITES, "150");
        l.observe(&sub, Kind::Write, 3, Some((StatusCode::Ok, &headers)));
        let (tokens, in_flight) = write_bucket(&l, &sub);
        assert_eq!(in_flight, 0);
        assert_eq!(tokens, 149.0, "150 left less one spare, none in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn a_remaining_count_that_is_not_a_finite_number_is_ignored() {
        let l = limits();
        let sub = Target::Subscription("s".into());
        for (sent, odd) in (1..).zip(["NaN", "inf", "-inf", "1e400", "twelve"]) {
            drop(l.admit(&sub, Kind::Write).await);
            let mut headers = Headers::new();
            headers.insert(REMAINING_WRITES, odd);
            l.observe(&sub, Kind::Write, sent, Some((StatusCode::Ok, &headers)));
        }
        let (tokens, _) = write_bucket(&l, &sub);
        assert!(tokens.is_finite() && tokens > 100.0, "{tokens}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waiting_for_a_token_is_not_overtaken_by_a_later_one() {
        let l = Arc::new(limits());
        let sub = Target::Subscription("s".into());
        let mut headers = Headers::new();
        headers.insert(REMAINING_WRITES, "1");
        drop(l.admit(&sub, Kind::Write).await);
        l.observe(&sub, Kind::Write, 1, Some((StatusCode::Ok, &headers)));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = {
            let (l, sub, order) = (l.clone(), sub.clone(), order.clone());
            tokio::spawn(async move {
                drop(l.admit(&sub, Kind::Write).await);
                order.lock().unwrap().push("first");
            })
        };
        // The first waits for the next token; it is due when the second asks.
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_millis(200)).await;
        drop(l.admit(&sub, Kind::Write).await);
        order.lock().unwrap().push("second");
        first.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["first", "second"]);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_held_back_by_a_429_leave_the_slots_to_reads() {
        let l = Arc::new(limits());
        let sub = Target::Subscription("s".into());
        drop(l.admit(&sub, Kind::Write).await);
        let mut headers = Headers::new();
        headers.insert(RETRY_AFTER, "30");
        l.observe(
            &sub,
            Kind::Write,
            1,
            Some((StatusCode::TooManyRequests, &headers)),
        );
        let writes: Vec<_> = (0..MAX_IN_FLIGHT + 4)
            .map(|_| {
                let (l, sub) = (l.clone(), sub.clone());
                tokio::spawn(async move { drop(l.admit(&sub, Kind::Write).await) })
            })
            .collect();
        tokio::task::yield_now().await;
        let start = Instant::now();
        drop(l.admit(&sub, Kind::Read).await);
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "a read is not queued behind the writes"
        );
        for write in writes {
            write.await.unwrap();
        }
        assert!(
            start.elapsed() >= Duration::from_secs(30),
            "the writes waited for the hold"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_max_in_flight_calls_run_at_once() {
        let l = Arc::new(limits());
        let sub = Target::Subscription("s".into());
        let mut held = Vec::new();
        for _ in 0..MAX_IN_FLIGHT {
            held.push(l.admit(&sub, Kind::Read).await);
        }
        let waiting = {
            let l = l.clone();
            let sub = sub.clone();
            tokio::spawn(async move { drop(l.admit(&sub, Kind::Read).await) })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "one more call waits for a slot");
        held.pop();
        waiting.await.unwrap();
    }
}
