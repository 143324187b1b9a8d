//! Calling actors: every call has a timeout, every transport failure becomes a 500, and a
//! reply to a write is sent only once the write is durable.

use crate::error::{AuthError, AuthResult};
use crate::storage::Flusher;
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};
use std::time::Duration;

/// Reply port for every request; expected failures travel as `Err` inside it.
pub type Reply<T> = RpcReplyPort<AuthResult<T>>;

/// Sends a request built by `build` and waits at most `timeout` for the reply.
pub async fn call<M: Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    timeout: Duration,
    build: impl FnOnce(Reply<T>) -> M,
) -> AuthResult<T> {
    match actor.call(build, Some(timeout)).await {
        Ok(CallResult::Success(result)) => result,
        Ok(CallResult::Timeout) => Err(AuthError::unexpected(format!("call to actor {} timed out", actor.get_id()))),
        // The actor dropped the reply port: it failed while handling this request (the
        // supervisor restarts it) or is stopping.
        Ok(CallResult::SenderError) | Err(_) => {
            Err(AuthError::unexpected(format!("actor {} did not answer", actor.get_id())))
        }
    }
}

/// Sends `result` once everything written so far is durable. Runs in its own task so the
/// actor's mailbox keeps moving while the disk syncs (and many replies share one sync).
/// Error replies wait too: "commit then fail" paths (reuse detection) wrote before failing.
/// `let _ =`: a caller that gave up must not crash anything.
pub fn reply_when_durable<T: Send + 'static>(flusher: &Flusher, reply: Reply<T>, result: AuthResult<T>) {
    let flusher = flusher.clone();
    tokio::spawn(async move {
        let result = match flusher.flush().await {
            Ok(()) => result,
            Err(e) => Err(AuthError::from(e)),
        };
        let _ = reply.send(result);
    });
}
