//! `GET /authorize`, `GET|POST /callback`, identity linking, and `grant_type=id_token`.
//! Port of external.go, identity.go and token_oidc.go. The flows decide; this file only turns
//! their answers into redirects: the session in the fragment (implicit), `?code=` (PKCE), or
//! GoTrue's error parameters — a browser mid-sign-in never lands on an error page.

use super::{mail, meta};
use crate::dto::SessionJson;
use crate::http::error::status_of;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode, ErrorKind};
use ferrotrue_actors::flows::auth::authenticate;
use ferrotrue_actors::flows::external::{
    self, AuthorizeInput, CallbackError, CallbackFailure, CallbackInput, CallbackOutcome, IdTokenInput,
};
use ferrotrue_actors::flows::SessionGrant;
use http::{header, Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use url::form_urlencoded::Serializer;

/// True for every path this module serves.
pub fn owns(path: &str) -> bool {
    path == "/authorize" || path == "/callback" || path.starts_with("/user/identities")
}

/// Dispatches the external-provider routes.
pub async fn route(cx: &Ctx, req: &Req, path: &str) -> AuthResult<Resp> {
    let method = &req.parts.method;
    let identity_id = path.strip_prefix("/user/identities/").filter(|id| !id.is_empty() && !id.contains('/'));
    match (path, identity_id) {
        ("/authorize", _) if method == Method::GET => authorize(cx, req).await,
        ("/callback", _) if method == Method::GET || method == Method::POST => callback(cx, req).await,
        ("/user/identities/authorize", _) if method == Method::GET => link(cx, req).await,
        ("/user/identities/authorize", _) | ("/authorize" | "/callback", _) => Err(method_not_allowed()),
        (_, Some(id)) if method == Method::DELETE => unlink(cx, req, id).await,
        (_, Some(_)) => Err(method_not_allowed()),
        _ => Err(AuthError::not_found(ErrorCode::NotFound, "404 page not found")),
    }
}

fn method_not_allowed() -> AuthError {
    AuthError::new(ErrorKind::MethodNotAllowed, ErrorCode::MethodNotAllowed, "Method not allowed")
}

fn authorize_input(cx: &Ctx, req: &Req) -> AuthorizeInput {
    let q = |k: &str| req.query(k).unwrap_or_default().to_owned();
    AuthorizeInput {
        provider: q("provider"),
        scopes: q("scopes"),
        redirect_to: mail::redirect_to(cx, req),
        code_challenge: req.query("code_challenge").map(str::to_owned),
        code_challenge_method: req.query("code_challenge_method").map(str::to_owned),
        query: req.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        linking_target: None,
    }
}

/// `GET /authorize` → 302 to the provider.
async fn authorize(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let url = external::authorize(&cx.actors, authorize_input(cx, req)).await?;
    Ok(response::redirect(StatusCode::FOUND, &url))
}

/// `GET /user/identities/authorize` (U) → `{url}` with `skip_http_redirect=true`, else 302.
async fn link(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let auth = authenticate(&cx.actors, req.bearer()).await?;
    let url = external::link_authorize(&cx.actors, &auth, authorize_input(cx, req)).await?;
    if req.query("skip_http_redirect") == Some("true") {
        return Ok(response::json_value(StatusCode::OK, &json!({ "url": url })));
    }
    Ok(response::redirect(StatusCode::FOUND, &url))
}

/// `DELETE /user/identities/{identity_id}` (U) → `{}`.
async fn unlink(cx: &Ctx, req: &Req, identity_id: &str) -> AuthResult<Resp> {
    let auth = authenticate(&cx.actors, req.bearer()).await?;
    external::unlink(&cx.actors, auth, identity_id, &cx.request_aud(req.header("x-jwt-aud"))).await?;
    Ok(response::json_value(StatusCode::OK, &json!({})))
}

/// `GET|POST /callback` → 302 to the app (303 to the site URL for a bad `state`).
async fn callback(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let mut params = req.query.clone();
    if req.parts.method == Method::POST {
        // Apple's `response_mode=form_post`: the form wins over the query, as in Go's r.Form.
        for (k, v) in url::form_urlencoded::parse(&req.body) {
            params.insert(k.into_owned(), v.into_owned());
        }
    }
    let input = CallbackInput { params, aud: cx.request_aud(req.header("x-jwt-aud")), meta: meta(req) };
    Ok(match external::callback(&cx.actors, input).await {
        Ok(CallbackOutcome::Session { redirect_to, grant }) => {
            response::redirect(StatusCode::FOUND, &response::with_fragment(&redirect_to, &session_fragment(&grant)))
        }
        Ok(CallbackOutcome::Code { redirect_to, code }) => {
            response::redirect(StatusCode::FOUND, &response::with_query(&redirect_to, &[("code", &code)]))
        }
        Err(failure) => failure_redirect(&failure),
    })
}

/// GoTrue's `AsRedirectURL`: sorted keys, provider tokens included, `sb` marks the redirect.
fn session_fragment(g: &SessionGrant) -> String {
    let mut s = Serializer::new(String::new());
    s.append_pair("access_token", &g.access_token);
    s.append_pair("expires_at", &g.expires_at.to_string());
    s.append_pair("expires_in", &g.expires_in.to_string());
    if let Some(t) = &g.provider_refresh_token {
        s.append_pair("provider_refresh_token", t);
    }
    if let Some(t) = &g.provider_token {
        s.append_pair("provider_token", t);
    }
    s.append_pair("refresh_token", &g.refresh_token);
    s.append_pair("sb", "");
    s.append_pair("token_type", "bearer");
    s.finish()
}

/// GoTrue's `redirectErrors` / `getErrorQueryString`.
fn failure_redirect(f: &CallbackFailure) -> Resp {
    let (error, code, description): (String, Option<&str>, String) = match &f.error {
        CallbackError::Provider { error, description } => (error.clone(), None, description.clone()),
        CallbackError::Auth(err) => {
            let status = status_of(err.kind);
            if status.is_server_error() {
                tracing::error!(error = %err, cause = ?err.internal, "OAuth callback failed");
            } else {
                tracing::info!(error = %err, cause = ?err.internal, "OAuth callback refused");
            }
            (oauth_error_of(err).to_owned(), Some(err.code.as_str()), err.msg.to_string())
        }
    };
    let mut params: Vec<(&str, &str)> = vec![("error", &error)];
    if let Some(code) = code {
        params.push(("error_code", code));
    }
    params.push(("error_description", &description));
    let target = response::with_query(&f.redirect_to, &params);
    if f.state_error {
        return response::redirect(StatusCode::SEE_OTHER, &target);
    }
    let mut fragment = Serializer::new(String::new());
    for (k, v) in &params {
        fragment.append_pair(k, v);
    }
    fragment.append_pair("sb", "");
    response::redirect(StatusCode::FOUND, &response::with_fragment(&target, &fragment.finish()))
}

/// The OAuth `error` for a GoTrue error (`oauthErrorMap`, with three codes as access_denied).
fn oauth_error_of(err: &AuthError) -> &'static str {
    match err.code {
        ErrorCode::SignupDisabled | ErrorCode::UserBanned | ErrorCode::ProviderEmailNeedsVerification => {
            return "access_denied";
        }
        _ => {}
    }
    match status_of(err.kind).as_u16() {
        400 => "invalid_request",
        401 => "unauthorized_client",
        403 => "access_denied",
        503 => "temporarily_unavailable",
        _ => "server_error",
    }
}

/// `grant_type=id_token` body (GoTrue's `IdTokenGrantParams`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IdTokenGrantParams {
    pub id_token: String,
    pub access_token: String,
    pub nonce: String,
    pub provider: String,
    pub client_id: String,
    pub issuer: String,
    pub link_identity: bool,
}

/// `POST /token?grant_type=id_token`.
pub async fn id_token(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let p: IdTokenGrantParams = req.json()?;
    let link_to = if p.link_identity {
        if req.header(header::AUTHORIZATION.as_str()).is_none() {
            return Err(AuthError::oauth(
                "invalid request",
                "Linking requires a valid user access token in Authorization",
            ));
        }
        Some(authenticate(&cx.actors, req.bearer()).await?)
    } else {
        None
    };
    let input = IdTokenInput {
        id_token: p.id_token,
        access_token: p.access_token,
        nonce: p.nonce,
        provider: p.provider,
        client_id: p.client_id,
        issuer: p.issuer,
        link_to,
        aud: cx.request_aud(req.header("x-jwt-aud")),
        meta: meta(req),
    };
    let grant = external::id_token(&cx.actors, input).await?;
    Ok(response::json(StatusCode::OK, &SessionJson::from(&grant)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_fragment_helpers() {
        assert_eq!(response::with_query("http://a/b#x", &[("code", "1")]), "http://a/b?code=1#x");
        assert_eq!(response::with_query("http://a/b?k=v", &[("e", "a b")]), "http://a/b?k=v&e=a+b");
        assert_eq!(response::with_fragment("http://a/b#old", "n=1"), "http://a/b#n=1");
    }

    #[test]
    fn gotrue_error_names() {
        let e = AuthError::unprocessable(ErrorCode::ProviderEmailNeedsVerification, "x");
        assert_eq!(oauth_error_of(&e), "access_denied");
        assert_eq!(oauth_error_of(&AuthError::validation("x")), "invalid_request");
        assert_eq!(oauth_error_of(&AuthError::unprocessable(ErrorCode::IdentityAlreadyExists, "x")), "server_error");
        assert_eq!(oauth_error_of(&AuthError::internal("x")), "server_error");
    }

    #[test]
    fn locations_are_header_safe() {
        let resp = response::redirect(StatusCode::FOUND, "https://app.example/é x");
        assert_eq!(resp.headers()[header::LOCATION], "https://app.example/%C3%A9%20x");
    }
}
