//! The admin API (`/admin/*`). Port of admin.go, admin_generate_link and audit.go.
//! Every route needs an admin token (`require_admin`). The single-user routes answer under
//! both `/admin/users/{id}` (what the official clients call) and the seed's `/admin/user/{id}`.

use super::{mail, require_admin};
use crate::dto::UserJson;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::crypto::Secret;
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode, ErrorKind};
use ferrotrue_actors::flows::admin::{self, AdminUserParams, GenerateLinkInput};
use http::{HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// `POST/PUT /admin/users` body, GoTrue's `adminUserParams`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AdminUserBody {
    pub id: Option<String>,
    pub aud: Option<String>,
    pub role: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password: Option<String>,
    pub password_hash: Option<String>,
    pub email_confirm: Option<bool>,
    pub phone_confirm: Option<bool>,
    pub user_metadata: Option<Map<String, Value>>,
    pub app_metadata: Option<Map<String, Value>>,
    pub ban_duration: Option<String>,
}

impl AdminUserBody {
    fn into_params(self) -> AuthResult<AdminUserParams> {
        let id = match self.id.filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(Uuid::parse_str(&raw).map_err(|_| AuthError::validation("id must be a UUID"))?),
        };
        Ok(AdminUserParams {
            id,
            aud: self.aud,
            role: self.role,
            email: self.email,
            phone: self.phone,
            password: self.password.map(Secret),
            password_hash: self.password_hash,
            email_confirm: self.email_confirm,
            phone_confirm: self.phone_confirm,
            user_metadata: self.user_metadata,
            app_metadata: self.app_metadata,
            ban_duration: self.ban_duration,
        })
    }
}

/// `DELETE /admin/users/{id}` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteBody {
    pub should_soft_delete: bool,
}

/// `POST /admin/generate_link` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GenerateLinkBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub email: String,
    pub new_email: String,
    pub password: Option<String>,
    pub data: Map<String, Value>,
    pub redirect_to: String,
}

/// True for every path this module serves.
pub fn owns(path: &str) -> bool {
    path.starts_with("/admin/")
}

/// Dispatches `/admin/...`.
pub async fn route(cx: &Ctx, req: &Req, path: &str) -> AuthResult<Resp> {
    let segments: Vec<&str> = path.trim_start_matches("/admin/").split('/').collect();
    let method = req.parts.method.clone();
    let role = match segments.as_slice() {
        ["users"] | ["users", ..] | ["user", _] | ["user", _, ..] | ["generate_link"] | ["audit"] | ["backup"] => {
            require_admin(cx, req).await?
        }
        _ => return Err(AuthError::not_found(ErrorCode::NotFound, "404 page not found")),
    };
    match (method, segments.as_slice()) {
        (Method::GET, ["users"]) => list_users(cx, req, path).await,
        (Method::POST, ["users"]) => create_user(cx, req, &role).await,
        (Method::GET, ["users" | "user", id]) => get_user(cx, id).await,
        (Method::PUT, ["users" | "user", id]) => update_user(cx, req, &role, id).await,
        (Method::DELETE, ["users" | "user", id]) => delete_user(cx, req, &role, id).await,
        (Method::GET, ["users" | "user", id, "factors"]) => {
            let factors = ferrotrue_actors::flows::mfa::admin_list(&cx.actors, user_id(id)?).await?;
            let list: Vec<Value> = factors.iter().map(crate::dto::factor_json).collect();
            Ok(response::json_value(StatusCode::OK, &Value::Array(list)))
        }
        (method, ["users" | "user", id, "factors", factor]) if method == Method::PUT || method == Method::DELETE => {
            let uid = user_id(id)?;
            let fid = Uuid::parse_str(factor)
                .map_err(|_| AuthError::not_found(ErrorCode::ValidationFailed, "factor_id must be an UUID"))?;
            let factor = if method == Method::PUT {
                #[derive(Default, serde::Deserialize)]
                #[serde(default)]
                struct FactorParams {
                    friendly_name: Option<String>,
                    phone: Option<String>,
                }
                let p: FactorParams = req.json_or_default()?;
                ferrotrue_actors::flows::mfa::admin_update(&cx.actors, &role, uid, fid, p.friendly_name, p.phone)
                    .await?
            } else {
                ferrotrue_actors::flows::mfa::admin_delete(&cx.actors, &role, uid, fid).await?
            };
            Ok(response::json_value(StatusCode::OK, &crate::dto::factor_json(&factor)))
        }
        (Method::DELETE, ["users" | "user", id, "sessions"]) => {
            admin::revoke_sessions(&cx.actors, &role, user_id(id)?).await?;
            Ok(response::json_value(StatusCode::OK, &json!({})))
        }
        (Method::POST, ["generate_link"]) => generate_link(cx, req, &role).await,
        (Method::GET, ["backup"]) => backup(cx, &role).await,
        (Method::GET, ["audit"]) => audit(cx, req, path).await,
        _ => Err(AuthError::new(ErrorKind::MethodNotAllowed, ErrorCode::MethodNotAllowed, "Method not allowed")),
    }
}

/// `GET /admin/backup` (ferrotrue's): a consistent snapshot of the database, for
/// `ferrotrue backup`; restore it offline with `ferrotrue restore`.
async fn backup(cx: &Ctx, role: &str) -> AuthResult<Resp> {
    let snapshot = cx.actors.backup().await?;
    tracing::info!(role, bytes = snapshot.len(), "backup taken");
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(snapshot)));
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/octet-stream"));
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn user_id(raw: &str) -> AuthResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| AuthError::not_found(ErrorCode::ValidationFailed, "user_id must be an UUID"))
}

/// `page` / `per_page` (empty = default); bad numbers are 400 `validation_failed`.
fn pagination(req: &Req) -> AuthResult<(usize, usize)> {
    let number = |name: &str, default: usize| -> AuthResult<usize> {
        match req.query(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                AuthError::validation(format!("Bad Pagination Parameters: {name} must be a positive number"))
            }),
        }
    };
    Ok((number("page", 1)?, number("per_page", 50)?))
}

/// `X-Total-Count` and GoTrue's `Link` header (`page` first: auth-js reads the character after
/// the first `=`).
fn paginate(mut resp: Resp, path: &str, page: usize, per_page: usize, total: usize) -> Resp {
    let last = total.div_ceil(per_page).max(1);
    let mut links = Vec::new();
    if page < last {
        links.push(format!("<{path}?page={}&per_page={per_page}>; rel=\"next\"", page + 1));
    }
    links.push(format!("<{path}?page={last}&per_page={per_page}>; rel=\"last\""));
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        headers.insert("x-total-count", v);
    }
    if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
        headers.insert("link", v);
    }
    resp
}

async fn list_users(cx: &Ctx, req: &Req, path: &str) -> AuthResult<Resp> {
    let (page, per_page) = pagination(req)?;
    let ascending = match req.query("sort").map(str::trim).filter(|s| !s.is_empty()) {
        None => false,
        Some(sort) => {
            let mut parts = sort.split_whitespace();
            let (field, dir) = (parts.next().unwrap_or_default(), parts.next().unwrap_or("desc"));
            if field != "created_at" || !matches!(dir.to_lowercase().as_str(), "asc" | "desc") {
                return Err(AuthError::validation(format!("Bad Sort Parameters: {sort}")));
            }
            dir.eq_ignore_ascii_case("asc")
        }
    };
    let filter = req.query("filter").map(str::to_owned);
    let listed = admin::list_users(&cx.actors, page, per_page, filter, ascending).await?;
    let users: Vec<UserJson> = listed.items.iter().map(UserJson::from).collect();
    let body = json!({"users": users, "aud": cx.config.settings.jwt.aud});
    Ok(paginate(response::json_value(StatusCode::OK, &body), path, page, per_page, listed.total))
}

async fn create_user(cx: &Ctx, req: &Req, role: &str) -> AuthResult<Resp> {
    let body: AdminUserBody = req.json()?;
    let aud = cx.request_aud(req.header("x-jwt-aud"));
    let user = admin::create_user(&cx.actors, role, body.into_params()?, &aud).await?;
    Ok(response::json(StatusCode::OK, &UserJson::from(&user)))
}

async fn get_user(cx: &Ctx, id: &str) -> AuthResult<Resp> {
    let user = admin::get_user(&cx.actors, user_id(id)?).await?;
    Ok(response::json(StatusCode::OK, &UserJson::from(&user)))
}

async fn update_user(cx: &Ctx, req: &Req, role: &str, id: &str) -> AuthResult<Resp> {
    let id = user_id(id)?;
    let body: AdminUserBody = req.json_or_default()?;
    let user = admin::update_user(&cx.actors, role, id, body.into_params()?).await?;
    Ok(response::json(StatusCode::OK, &UserJson::from(&user)))
}

async fn delete_user(cx: &Ctx, req: &Req, role: &str, id: &str) -> AuthResult<Resp> {
    let id = user_id(id)?;
    let body: DeleteBody = req.json_or_default()?;
    admin::delete_user(&cx.actors, role, id, body.should_soft_delete).await?;
    Ok(response::json_value(StatusCode::OK, &json!({})))
}

async fn generate_link(cx: &Ctx, req: &Req, role: &str) -> AuthResult<Resp> {
    let body: GenerateLinkBody = req.json()?;
    // The body's redirect_to wins if the allow list accepts it; else the usual sources.
    let redirect_to = if !body.redirect_to.is_empty() && cx.actors.redirects.allows(&body.redirect_to) {
        body.redirect_to.clone()
    } else {
        mail::redirect_to(cx, req)
    };
    let input = GenerateLinkInput {
        kind: body.kind,
        email: body.email,
        new_email: body.new_email,
        password: body.password.map(Secret),
        data: body.data,
        redirect_to,
        aud: cx.request_aud(req.header("x-jwt-aud")),
    };
    let generated = admin::generate_link(&cx.actors, role, input).await?;
    // GoTrue flattens the user's fields next to the link properties.
    let mut body = serde_json::to_value(UserJson::from(&generated.user)).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("action_link".into(), json!(generated.link.action_link));
        map.insert("email_otp".into(), json!(generated.link.otp));
        map.insert("hashed_token".into(), json!(generated.link.hashed_token));
        map.insert("verification_type".into(), json!(generated.verification_type));
        map.insert("redirect_to".into(), json!(generated.redirect_to));
    }
    Ok(response::json_value(StatusCode::OK, &body))
}

async fn audit(cx: &Ctx, req: &Req, path: &str) -> AuthResult<Resp> {
    let (page, per_page) = pagination(req)?;
    let listed = admin::audit_log(&cx.actors, page, per_page, req.query("query")).await?;
    let entries: Vec<Value> = listed
        .items
        .iter()
        .map(|e| {
            json!({
                "id": e.id.to_string(),
                "payload": Value::Object(e.payload.to_map()),
                "created_at": e.created_at.rfc3339(),
                "ip_address": e.ip_address,
            })
        })
        .collect();
    Ok(paginate(response::json_value(StatusCode::OK, &Value::Array(entries)), path, page, per_page, listed.total))
}
