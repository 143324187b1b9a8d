//! Everything of ferrotrue that is not HTTP: the five actors, their handles, the supervisor,
//! the flows that compose them (one per GoTrue operation), domain types, errors and storage.
//!
//! # Layout
//! * [`storage`] — the only code that touches sled; group commit for durability.
//! * [`user_registry`], [`session_manager`], [`otp_issuer`], [`oauth_flow`], [`mailer`] — one
//!   actor each: a message enum, a state that writes through, a handle.
//! * [`supervisor`] — starts and restarts them.
//! * [`flows`] — signup, token grants, user update, logout: the GoTrue operations.
//! * [`error`], [`jwt`], [`crypto`], [`clock`], [`settings`] — shared vocabulary.

pub mod call;
pub mod clock;
pub mod crypto;
pub mod error;
pub mod flows;
pub mod hooks;
pub mod jwt;
pub mod jwt_keys;
pub mod mailer;
pub mod oauth;
pub mod oauth_flow;
pub mod otp_issuer;
pub mod pg;
pub mod redirect;
pub mod session_manager;
pub mod settings;
pub mod sms;
pub mod storage;
pub mod supervisor;
pub mod user_registry;

use clock::Clock;
use crypto::Hasher;
use jwt::JwtKeys;
use mailer::Mail;
use oauth_flow::OAuthFlows;
use otp_issuer::Otps;
use ractor::{Actor, ActorRef};
use session_manager::Sessions;
use settings::Settings;
use std::sync::Arc;
use std::time::Duration;
use storage::Store;
use supervisor::{Root, RootArgs, RootMessage};
use tokio::sync::oneshot;
use user_registry::Users;

/// Where the actors keep their state: chosen once at start-up, the same for every actor.
#[derive(Clone)]
pub enum Storage {
    /// The embedded sled database: one node, state in memory, written through.
    Sled(Store),
    /// GoTrue's schema in Postgres: any number of nodes, no authoritative state in memory.
    Postgres(pg::Db),
}

/// What every actor is started (and restarted) with.
#[derive(Clone)]
pub struct ActorEnv {
    pub storage: Storage,
    pub settings: Arc<Settings>,
    pub clock: Clock,
}

/// Handles to every actor plus the pure services flows need. Cheap to clone.
#[derive(Clone)]
pub struct Actors {
    pub users: Users,
    pub sessions: Sessions,
    pub otps: Otps,
    pub oauth: OAuthFlows,
    pub mail: Mail,
    pub hasher: Hasher,
    pub jwt: JwtKeys,
    pub clock: Clock,
    pub settings: Arc<Settings>,
    /// `redirect_to` policy (site URL + allow list).
    pub redirects: Arc<redirect::RedirectPolicy>,
    /// sled's group commit; `None` on Postgres, where every write commits before its reply.
    flusher: Option<storage::Flusher>,
    /// For online backups only (sled); everything else reaches storage through an actor.
    store: Option<Store>,
    /// The Postgres pool (for its metrics); `None` on sled.
    db: Option<pg::Db>,
}

impl Actors {
    /// Resolves once every write made so far (by any actor) is synced to disk — one group
    /// commit shared by all concurrent callers. The HTTP layer awaits it before every response;
    /// flows await it before anything leaves the server (a mail with a link, an SMS code).
    /// On Postgres this is immediate: each write committed before the actor replied.
    pub async fn durable(&self) -> error::AuthResult<()> {
        match &self.flusher {
            Some(flusher) => flusher.flush().await.map_err(error::AuthError::from),
            None => Ok(()),
        }
    }

    /// The Postgres pool's `(open, idle, waiting)` connections; `None` on sled.
    pub fn pool_status(&self) -> Option<(usize, usize, usize)> {
        self.db.as_ref().map(pg::Db::pool_status)
    }

    /// A consistent, checksummed snapshot of the whole database ([`storage::backup`]), taken on
    /// a blocking thread: writes pause while it is copied, reads and the reactor do not.
    /// A Postgres-backed server has none: back up the database with Postgres' own tools.
    pub async fn backup(&self) -> error::AuthResult<Vec<u8>> {
        let Some(store) = self.store.clone() else {
            return Err(error::AuthError::bad_request(
                error::ErrorCode::ValidationFailed,
                "this server stores its data in Postgres: back it up with pg_dump or your provider's backups",
            ));
        };
        tokio::task::spawn_blocking(move || store.snapshot())
            .await
            .map_err(|e| error::AuthError::unexpected(format!("backup task: {e}")))?
            .map_err(error::AuthError::from)
    }
}

/// The running supervision tree.
pub struct Supervisor {
    root: ActorRef<RootMessage>,
    join: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Stops every actor and waits for them.
    pub async fn shutdown(self) {
        let _ = ractor::call_t!(self.root, |reply| RootMessage::Shutdown { reply }, 15_000);
        let _ = self.join.await;
    }
    /// Resolves if the root stops on its own (restart budget exhausted).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.join).await;
    }
    /// Number of child restarts so far.
    pub async fn restarts(&self) -> usize {
        ractor::call_t!(self.root, |reply| RootMessage::Restarts { reply }, 5_000).unwrap_or(0)
    }
}

/// Why the actors could not start.
#[derive(Debug, thiserror::Error)]
#[error("starting the actors failed: {0}")]
pub struct StartError(String);

impl Actors {
    /// Spawns the supervision tree over `storage`.
    pub async fn start(storage: Storage, settings: Settings, clock: Clock) -> Result<(Actors, Supervisor), StartError> {
        let settings = Arc::new(settings);
        let store = match &storage {
            Storage::Sled(store) => Some(store.clone()),
            Storage::Postgres(_) => None,
        };
        let flusher = store.as_ref().map(Store::flusher);
        let db = match &storage {
            Storage::Postgres(db) => Some(db.clone()),
            Storage::Sled(_) => None,
        };
        let env = ActorEnv { storage, settings: settings.clone(), clock: clock.clone() };
        let (refs_tx, refs_rx) = oneshot::channel();
        let (root, join) =
            Actor::spawn(None, Root, RootArgs { env, refs: refs_tx }).await.map_err(|e| StartError(e.to_string()))?;
        let refs = refs_rx.await.map_err(|_| StartError("root did not publish its children".into()))?;
        let timeout: Duration = settings.call_timeout;
        let actors = Actors {
            users: Users::new(refs.users, timeout),
            sessions: Sessions::new(refs.sessions, timeout),
            otps: Otps::new(refs.otps, timeout),
            oauth: OAuthFlows::new(refs.oauth, timeout),
            // SMTP waits longer than a memory call; it has its own bound (`smtp_timeout`).
            mail: Mail::new(refs.mail, settings.mail.smtp_timeout + Duration::from_secs(1)),
            hasher: Hasher::with_queue(settings.hash_cost, settings.work.hash_queue),
            jwt: JwtKeys::new(&settings.jwt),
            redirects: Arc::new(redirect::RedirectPolicy::new(&settings.mail.site_url, &settings.mail.uri_allow_list)),
            clock,
            settings,
            flusher,
            store,
            db,
        };
        Ok((actors, Supervisor { root, join }))
    }
}
