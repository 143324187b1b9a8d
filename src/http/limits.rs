//! Per-client rate limits (GoTrue's `GOTRUE_RATE_LIMIT_*` buckets) and the per-account password
//! throttle, on `governor`'s keyed GCRA limiters.
//!
//! * **Who is the client**: `Sb-Forwarded-For` when `GOTRUE_SECURITY_SB_FORWARDED_FOR_ENABLED`,
//!   else the first value of `GOTRUE_RATE_LIMIT_HEADER` when configured and present, else the TCP
//!   peer. GoTrue limits nothing without the header; we fall back to the peer, so a server
//!   exposed directly is protected by default. IPv6 clients are grouped by /64 (one host
//!   usually owns a whole /64), IPv4-mapped IPv6 is treated as IPv4.
//! * **Bounded memory**: keys are 64-bit keyed hashes of the client (fixed size whatever the
//!   header holds); each limiter tracks at most [`MAX_TRACKED_KEYS`] clients. A periodic sweep
//!   forgets clients whose bucket has refilled; if the table is still full (a flood from more
//!   distinct addresses than that within one refill period), the limiter's clients share one
//!   overflow bucket until it empties — the limit degrades to a global one, never to none.

use crate::config_security::{Bucket, RateLimits};
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::HeaderMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Most clients one limiter remembers; beyond it, its clients share the overflow bucket.
pub const MAX_TRACKED_KEYS: usize = 65_536;
/// The shared bucket of clients that arrive while the table is full.
const OVERFLOW_KEY: u64 = 0;
/// GoTrue's message for every per-client limiter.
pub const RATE_LIMIT_MSG: &str = "Request rate limit reached";

type Keyed = RateLimiter<u64, DefaultKeyedStateStore<u64>, DefaultClock>;

/// One keyed token bucket.
pub struct Limiter {
    inner: Keyed,
    started: std::time::Instant,
    last_sweep_ms: AtomicU64,
}

impl Limiter {
    fn new(bucket: Bucket) -> Limiter {
        // A bucket that never refills is one whose refill is a century away.
        let period = bucket.period.unwrap_or(Duration::from_secs(100 * 365 * 86_400));
        let burst = NonZeroU32::new(bucket.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX)).allow_burst(burst);
        Limiter {
            inner: RateLimiter::keyed(quota),
            started: std::time::Instant::now(),
            last_sweep_ms: AtomicU64::new(0),
        }
    }

    /// Takes one request from `key`'s bucket; `Err(wait)` when it is empty. When the table is
    /// full even after forgetting idle clients (at most one sweep a second), every client of
    /// this limiter shares the overflow bucket until it drains: memory stays bounded and the
    /// limit degrades to a global one rather than to none.
    pub fn check(&self, key: u64) -> Result<(), Duration> {
        let mut key = key;
        if self.inner.len() >= MAX_TRACKED_KEYS {
            let now = self.started.elapsed().as_millis() as u64;
            let last = self.last_sweep_ms.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= 1000
                && self.last_sweep_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                self.sweep();
            }
            if self.inner.len() >= MAX_TRACKED_KEYS {
                key = OVERFLOW_KEY;
            }
        }
        self.inner.check_key(&key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets clients whose bucket has refilled (indistinguishable from a fresh one).
    pub fn sweep(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.inner.len()
    }
}

/// The key of a per-account or per-address bucket: the address as the flows will find it
/// (email trimmed and lower-cased, else the phone's digits), so spelling variants (case,
/// spaces, `+` and separators in a phone number) share one bucket.
pub fn account_key(email: &str, phone: &str) -> String {
    if email.trim().is_empty() {
        phone.chars().filter(char::is_ascii_digit).collect()
    } else {
        email.trim().to_lowercase()
    }
}

/// Which GoTrue limiter guards a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Otp,
    Verify,
    Token,
    Anonymous,
    Sso,
    Web3,
    Mfa,
}

/// The server's limiters.
pub struct Limits {
    header: Option<http::HeaderName>,
    sb_forwarded_for: bool,
    keys: std::hash::RandomState,
    proxy_warned: std::sync::atomic::AtomicBool,
    otp: Limiter,
    verify: Limiter,
    token: Limiter,
    anonymous: Limiter,
    sso: Limiter,
    web3: Limiter,
    mfa: Limiter,
    password_per_client: Limiter,
    password_per_account: Limiter,
    code_per_target: Limiter,
}

/// The client a request is attributed to, for limits and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    Ip(IpAddr),
    /// A `GOTRUE_RATE_LIMIT_HEADER` value that is not an IP address, by its keyed hash.
    Opaque(u64),
}

fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
        v4 => v4,
    }
}

impl Limits {
    /// Builds the limiters from the configuration.
    pub fn new(config: &RateLimits) -> Limits {
        Limits {
            header: config.header.as_deref().and_then(|h| http::HeaderName::try_from(h).ok()),
            sb_forwarded_for: config.sb_forwarded_for,
            keys: std::hash::RandomState::new(),
            proxy_warned: std::sync::atomic::AtomicBool::new(false),
            otp: Limiter::new(config.otp),
            verify: Limiter::new(config.verify),
            token: Limiter::new(config.token),
            anonymous: Limiter::new(config.anonymous),
            sso: Limiter::new(config.sso),
            web3: Limiter::new(config.web3),
            mfa: Limiter::new(config.mfa),
            password_per_client: Limiter::new(config.password_per_client),
            password_per_account: Limiter::new(config.password_per_account),
            code_per_target: Limiter::new(config.code_per_target),
        }
    }

    /// Who sent this request (see the module doc for the order).
    pub fn client(&self, headers: &HeaderMap, peer: SocketAddr) -> Client {
        let first = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        if self.sb_forwarded_for {
            if let Some(ip) = first("sb-forwarded-for").and_then(|v| v.parse::<IpAddr>().ok()) {
                return Client::Ip(group(ip));
            }
        }
        if let Some(value) = self.header.as_ref().and_then(|h| first(h.as_str())) {
            return match value.parse::<IpAddr>() {
                Ok(ip) => Client::Ip(group(ip)),
                Err(_) => Client::Opaque(self.hash(value)),
            };
        }
        if self.header.is_none()
            && headers.contains_key("x-forwarded-for")
            && !self.proxy_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "requests arrive through a proxy (X-Forwarded-For) but GOTRUE_RATE_LIMIT_HEADER is not set: every \
                 client behind that proxy shares one rate limit; set GOTRUE_RATE_LIMIT_HEADER=X-Forwarded-For if \
                 the proxy sets it"
            );
        }
        Client::Ip(group(peer.ip()))
    }

    fn hash(&self, value: impl Hash) -> u64 {
        // Never the overflow key.
        self.keys.hash_one(value).max(1)
    }

    fn limiter(&self, scope: Scope) -> &Limiter {
        match scope {
            Scope::Otp => &self.otp,
            Scope::Verify => &self.verify,
            Scope::Token => &self.token,
            Scope::Anonymous => &self.anonymous,
            Scope::Sso => &self.sso,
            Scope::Web3 => &self.web3,
            Scope::Mfa => &self.mfa,
        }
    }

    /// GoTrue's per-client check: `429 over_request_rate_limit` "Request rate limit reached".
    pub fn check(&self, scope: Scope, client: Client) -> AuthResult<()> {
        self.limiter(scope).check(self.hash(client)).map_err(|wait| {
            tracing::info!(?scope, ?client, "rate limit reached");
            metrics::counter!("ferrotrue_rate_limited_total", "scope" => format!("{scope:?}")).increment(1);
            refused(RATE_LIMIT_MSG, wait)
        })
    }

    /// ferrotrue's password throttle (GoTrue has none): every password sign-in for `account`
    /// (normalised email or phone, whether or not it exists — no enumeration) takes one token
    /// from the (account, client) bucket and one from the account's bucket over all clients.
    /// Refused attempts cost no hashing.
    pub fn password_attempt(&self, account: &str, client: Client) -> AuthResult<()> {
        let refuse = |wait: Duration| {
            tracing::info!(?client, "password sign-in throttled for an account");
            metrics::counter!("ferrotrue_rate_limited_total", "scope" => "PasswordAccount").increment(1);
            refused("Too many sign-in attempts for this account, please try again later", wait)
        };
        self.password_per_client.check(self.hash((account, client))).map_err(refuse)?;
        self.password_per_account.check(self.hash(account)).map_err(refuse)
    }

    /// ferrotrue's bound on typed-in one-time codes for one address (normalised email or phone),
    /// over all clients: each code also dies after 5 wrong guesses, and this caps how many
    /// fresh codes an attacker can burn through per day.
    pub fn code_attempt(&self, target: &str) -> AuthResult<()> {
        self.code_per_target.check(self.hash(("code", target))).map_err(|wait| {
            tracing::info!("one-time code attempts throttled for an address");
            metrics::counter!("ferrotrue_rate_limited_total", "scope" => "CodeTarget").increment(1);
            refused("Too many verification attempts for this address, please try again later", wait)
        })
    }

    /// Forgets idle clients in every limiter.
    pub fn sweep(&self) {
        for l in self.all() {
            l.sweep();
        }
    }

    /// Clients tracked over all limiters (tests, metrics).
    pub fn tracked(&self) -> usize {
        self.all().iter().map(|l| l.tracked()).sum()
    }

    fn all(&self) -> [&Limiter; 10] {
        [
            &self.otp,
            &self.verify,
            &self.token,
            &self.anonymous,
            &self.sso,
            &self.web3,
            &self.mfa,
            &self.password_per_client,
            &self.password_per_account,
            &self.code_per_target,
        ]
    }
}

fn refused(msg: &'static str, wait: Duration) -> AuthError {
    AuthError::too_many_requests(ErrorCode::OverRequestRateLimit, msg)
        .with_retry_after(wait.as_secs_f64().ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 4000)
    }

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let limits = Limits::new(&RateLimits::default());
        let client = limits.client(&HeaderMap::new(), peer("203.0.113.9"));
        for _ in 0..30 {
            limits.check(Scope::Verify, client).unwrap();
        }
        let err = limits.check(Scope::Verify, client).unwrap_err();
        assert_eq!(err.code, ErrorCode::OverRequestRateLimit);
        assert_eq!(err.msg, RATE_LIMIT_MSG);
        assert!(err.retry_after.is_some_and(|s| (1..=10).contains(&s)), "{:?}", err.retry_after);
        let other = limits.client(&HeaderMap::new(), peer("203.0.113.10"));
        limits.check(Scope::Verify, other).unwrap();
        limits.check(Scope::Otp, client).unwrap();
    }

    #[test]
    fn client_identity() {
        let mut config = RateLimits::default();
        let limits = Limits::new(&config);
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        assert_eq!(limits.client(&h, peer("10.0.0.1")), Client::Ip("10.0.0.1".parse().unwrap()), "no header: the peer");
        assert_eq!(
            limits.client(&h, peer("2001:db8:1:2:3:4:5:6")),
            Client::Ip("2001:db8:1:2::".parse().unwrap()),
            "IPv6 by /64"
        );
        assert_eq!(limits.client(&h, peer("::ffff:10.0.0.7")), Client::Ip("10.0.0.7".parse().unwrap()));
        config.header = Some("X-Forwarded-For".into());
        let limits = Limits::new(&config);
        h.insert("x-forwarded-for", "1.2.3.4, 10.0.0.1".parse().unwrap());
        assert_eq!(limits.client(&h, peer("10.0.0.1")), Client::Ip("1.2.3.4".parse().unwrap()), "first value");
        h.insert("x-forwarded-for", "client-7".parse().unwrap());
        assert!(matches!(limits.client(&h, peer("10.0.0.1")), Client::Opaque(_)));
        h.insert("x-forwarded-for", " , 1.2.3.4".parse().unwrap());
        assert_eq!(limits.client(&h, peer("10.0.0.1")), Client::Ip("10.0.0.1".parse().unwrap()), "empty: the peer");
    }

    #[test]
    fn table_is_bounded_and_overflow_is_shared() {
        let limiter = Limiter::new(Bucket { burst: 2, period: Some(Duration::from_secs(3600)) });
        for key in 1..=(MAX_TRACKED_KEYS as u64 + 500) {
            let _ = limiter.check(key);
        }
        assert!(limiter.tracked() <= MAX_TRACKED_KEYS + 1, "{}", limiter.tracked());
        // Beyond the bound every client shares one bucket, which the flood has emptied.
        assert!(limiter.check(u64::MAX - 1).is_err());
    }

    #[test]
    fn password_throttle_per_account_and_client() {
        let limits = Limits::new(&RateLimits::default());
        let attacker = limits.client(&HeaderMap::new(), peer("198.51.100.1"));
        let owner = limits.client(&HeaderMap::new(), peer("192.0.2.1"));
        for _ in 0..5 {
            limits.password_attempt("ann@example.com", attacker).unwrap();
        }
        let err = limits.password_attempt("ann@example.com", attacker).unwrap_err();
        assert_eq!(err.code, ErrorCode::OverRequestRateLimit);
        limits.password_attempt("ann@example.com", owner).unwrap();
        limits.password_attempt("bob@example.com", attacker).unwrap();
    }
}
