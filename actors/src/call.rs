//! Calling actors: every call has a timeout, and every transport failure becomes a 500.

use crate::error::{AuthError, AuthResult};
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
    // Calls waiting for this actor's reply: its mailbox depth as callers see it.
    let name = std::any::type_name::<M>().rsplit("::").next().unwrap_or("actor").trim_end_matches("Message");
    let _waiting = InFlight::enter(metrics::gauge!("ferrotrue_actor_calls_in_flight", "actor" => name));
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

/// One call counted in a gauge for as long as it waits, however it ends (a cancelled request
/// drops the future mid-call).
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter(gauge: metrics::Gauge) -> InFlight {
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Replies to a caller. `let _ =`: a caller that gave up must not crash the actor.
///
/// Writes are already in sled when this runs (write-through); making them *durable* is the
/// HTTP layer's job: every response waits for [`crate::Actors::durable`] (one group-committed
/// sync for all the writes the request made or observed), so a request that touches three
/// actors pays for one sync, not three.
pub fn send_reply<T>(reply: Reply<T>, result: AuthResult<T>) {
    let _ = reply.send(result);
}
