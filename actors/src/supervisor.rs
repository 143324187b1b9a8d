//! Root of the supervision tree.
//!
//! ```text
//! Root
//! ├─ UserRegistry      users, users_by_email, users_by_phone
//! ├─ SessionManager    sessions, refresh_tokens
//! ├─ OtpIssuer         one_time_tokens
//! ├─ OAuthFlow         flow_states
//! └─ Mailer            (no trees)
//! ```
//!
//! A child that fails (a panic or an error in a handler) is respawned with the same
//! [`ActorEnv`]; its `pre_start` reloads from sled, which is complete because every actor writes
//! through before replying. Handles follow the new actor through a `watch` channel, so no
//! process-global actor names are used (two servers can run in one test process). More than
//! [`MAX_RESTARTS`] within [`RESTART_WINDOW`] stops the root, and the server shuts down rather
//! than flap.

use crate::mailer::{Mailer, MailerMessage};
use crate::oauth_flow::{OAuthFlow, OAuthFlowMessage};
use crate::otp_issuer::{OtpIssuer, OtpIssuerMessage};
use crate::session_manager::{SessionManager, SessionManagerMessage};
use crate::user_registry::{UserRegistry, UserRegistryMessage};
use crate::ActorEnv;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Restart budget.
pub const MAX_RESTARTS: usize = 10;
/// Window of the restart budget.
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// The five children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    UserRegistry,
    SessionManager,
    OtpIssuer,
    OAuthFlow,
    Mailer,
}

/// Receivers that always hold the current `ActorRef` of each child.
pub struct ChildRefs {
    pub users: watch::Receiver<ActorRef<UserRegistryMessage>>,
    pub sessions: watch::Receiver<ActorRef<SessionManagerMessage>>,
    pub otps: watch::Receiver<ActorRef<OtpIssuerMessage>>,
    pub oauth: watch::Receiver<ActorRef<OAuthFlowMessage>>,
    pub mail: watch::Receiver<ActorRef<MailerMessage>>,
}

/// Messages to the root.
pub enum RootMessage {
    /// Stop every child (waiting for them), then the root.
    Shutdown { reply: RpcReplyPort<()> },
    /// How many restarts each child has had (for tests and diagnostics).
    Restarts { reply: RpcReplyPort<usize> },
}

/// The root supervisor.
pub struct Root;

/// What the root starts with; `refs` hands the children's receivers back to [`crate::Actors::start`].
pub struct RootArgs {
    pub env: ActorEnv,
    pub refs: oneshot::Sender<ChildRefs>,
}

/// Current children and the channels that publish them.
pub struct RootState {
    env: ActorEnv,
    children: HashMap<ActorId, Child>,
    users: watch::Sender<ActorRef<UserRegistryMessage>>,
    sessions: watch::Sender<ActorRef<SessionManagerMessage>>,
    otps: watch::Sender<ActorRef<OtpIssuerMessage>>,
    oauth: watch::Sender<ActorRef<OAuthFlowMessage>>,
    mail: watch::Sender<ActorRef<MailerMessage>>,
    recent_restarts: VecDeque<Instant>,
    total_restarts: usize,
    stopping: bool,
}

async fn spawn_child<A>(actor: A, env: &ActorEnv, root: ActorCell) -> Result<ActorRef<A::Msg>, ActorProcessingErr>
where
    A: Actor<Arguments = ActorEnv>,
{
    let (child, _join) = Actor::spawn_linked(None, actor, env.clone(), root).await?;
    Ok(child)
}

impl Actor for Root {
    type Msg = RootMessage;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(&self, me: ActorRef<RootMessage>, args: RootArgs) -> Result<RootState, ActorProcessingErr> {
        let env = args.env;
        let cell = me.get_cell();
        let users = spawn_child(UserRegistry, &env, cell.clone()).await?;
        let sessions = spawn_child(SessionManager, &env, cell.clone()).await?;
        let otps = spawn_child(OtpIssuer, &env, cell.clone()).await?;
        let oauth = spawn_child(OAuthFlow, &env, cell.clone()).await?;
        let mail = spawn_child(Mailer, &env, cell).await?;
        let children = HashMap::from([
            (users.get_id(), Child::UserRegistry),
            (sessions.get_id(), Child::SessionManager),
            (otps.get_id(), Child::OtpIssuer),
            (oauth.get_id(), Child::OAuthFlow),
            (mail.get_id(), Child::Mailer),
        ]);
        let (users, users_rx) = watch::channel(users);
        let (sessions, sessions_rx) = watch::channel(sessions);
        let (otps, otps_rx) = watch::channel(otps);
        let (oauth, oauth_rx) = watch::channel(oauth);
        let (mail, mail_rx) = watch::channel(mail);
        let refs = ChildRefs { users: users_rx, sessions: sessions_rx, otps: otps_rx, oauth: oauth_rx, mail: mail_rx };
        let _ = args.refs.send(refs);
        Ok(RootState {
            env,
            children,
            users,
            sessions,
            otps,
            oauth,
            mail,
            recent_restarts: VecDeque::new(),
            total_restarts: 0,
            stopping: false,
        })
    }

    async fn handle(
        &self,
        me: ActorRef<RootMessage>,
        msg: RootMessage,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMessage::Shutdown { reply } => {
                st.stopping = true;
                me.stop_children_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10))).await;
                let _ = reply.send(());
                me.stop(Some("shutdown".into()));
            }
            RootMessage::Restarts { reply } => {
                let _ = reply.send(st.total_restarts);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<RootMessage>,
        event: SupervisionEvent,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        // ractor's default stops the supervisor when any child exits; we restart instead.
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, format!("stopped: {}", reason.unwrap_or_default()))
            }
            _ => return Ok(()),
        };
        if st.stopping {
            return Ok(());
        }
        let Some(child) = st.children.remove(&cell.get_id()) else { return Ok(()) };
        tracing::error!(?child, %why, "actor exited; restarting it from its stored state");
        let now = Instant::now();
        st.recent_restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if st.recent_restarts.len() >= MAX_RESTARTS {
            tracing::error!(?child, "restart budget exhausted; stopping the server");
            st.stopping = true;
            me.stop(Some("restart budget exhausted".into()));
            return Ok(());
        }
        st.recent_restarts.push_back(now);
        st.total_restarts += 1;
        metrics::counter!("ferrotrue_actor_restarts_total", "actor" => format!("{child:?}")).increment(1);
        if let Err(e) = restart(child, &me, st).await {
            tracing::error!(?child, error = %e, "restart failed; stopping the server");
            st.stopping = true;
            me.stop(Some(format!("could not restart {child:?}")));
        }
        Ok(())
    }
}

async fn restart(child: Child, me: &ActorRef<RootMessage>, st: &mut RootState) -> Result<(), ActorProcessingErr> {
    let cell = me.get_cell();
    let id = match child {
        Child::UserRegistry => {
            let a = spawn_child(UserRegistry, &st.env, cell).await?;
            let id = a.get_id();
            st.users.send_replace(a);
            id
        }
        Child::SessionManager => {
            let a = spawn_child(SessionManager, &st.env, cell).await?;
            let id = a.get_id();
            st.sessions.send_replace(a);
            id
        }
        Child::OtpIssuer => {
            let a = spawn_child(OtpIssuer, &st.env, cell).await?;
            let id = a.get_id();
            st.otps.send_replace(a);
            id
        }
        Child::OAuthFlow => {
            let a = spawn_child(OAuthFlow, &st.env, cell).await?;
            let id = a.get_id();
            st.oauth.send_replace(a);
            id
        }
        Child::Mailer => {
            let a = spawn_child(Mailer, &st.env, cell).await?;
            let id = a.get_id();
            st.mail.send_replace(a);
            id
        }
    };
    st.children.insert(id, child);
    Ok(())
}
