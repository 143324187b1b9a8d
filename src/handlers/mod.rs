//! One file per GoTrue endpoint family (internal/api/*.go). Handlers parse, call one flow,
//! render.

pub mod health;
pub mod logout;
pub mod settings;
pub mod signup;
pub mod token;
pub mod user;

use crate::http::request::Req;
use ferrotrue_actors::flows::RequestMeta;

/// Session metadata from the request.
pub fn meta(req: &Req) -> RequestMeta {
    RequestMeta { user_agent: req.user_agent(), ip: req.client_ip() }
}
