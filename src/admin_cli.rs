//! `ferrotrue users …` and `ferrotrue sessions revoke …`: the admin API from the command line,
//! against a running server. It reads the same environment as the server and signs a
//! `service_role` token valid for 5 minutes with the server's own signer (`GOTRUE_JWT_KEYS`'s
//! signing key, else `GOTRUE_JWT_SECRET` or the secret generated in `FERROTRUE_DATA_DIR`), so an
//! operator on the host needs nothing else; `--key` takes a service key instead.

use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What to do.
#[derive(Debug, Clone)]
pub enum Action {
    ListUsers { page: usize, per_page: usize },
    CreateUser { email: String, password: Option<String>, confirm: bool },
    DeleteUser { id: String },
    BanUser { id: String, duration: String },
    RevokeSessions { id: String },
}

/// A `service_role` token valid for 5 minutes, signed as the server signs.
pub fn service_token(jwt: &ferrotrue_actors::settings::JwtSettings) -> Result<String, String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let claims = json!({"role": "service_role", "iss": "ferrotrue-cli", "iat": now, "exp": now + 300});
    ferrotrue_actors::jwt::JwtKeys::new(jwt).sign(&claims).map_err(|e| format!("cannot sign a service token: {e}"))
}

/// Runs `action` against `url` with `token`; the server's JSON answer, or its error message.
pub async fn run(url: &str, token: &str, action: &Action) -> Result<Value, String> {
    let base = url.trim_end_matches('/');
    let (method, path, body) = match action {
        Action::ListUsers { page, per_page } => {
            (Method::GET, format!("/admin/users?page={page}&per_page={per_page}"), None)
        }
        Action::CreateUser { email, password, confirm } => {
            let mut body = json!({"email": email, "email_confirm": confirm});
            if let Some(p) = password {
                body["password"] = json!(p);
            }
            (Method::POST, "/admin/users".to_owned(), Some(body))
        }
        Action::DeleteUser { id } => (Method::DELETE, format!("/admin/users/{id}"), None),
        Action::BanUser { id, duration } => {
            (Method::PUT, format!("/admin/users/{id}"), Some(json!({"ban_duration": duration})))
        }
        Action::RevokeSessions { id } => (Method::DELETE, format!("/admin/users/{id}/sessions"), None),
    };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let mut request = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .header("X-Supabase-Api-Version", "2024-01-01");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.map_err(|e| format!("cannot reach {base}: {e}"))?;
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        let message = value["message"].as_str().or(value["msg"].as_str()).unwrap_or("no message");
        let code = value["code"].as_str().unwrap_or("");
        Err(format!("{} {code}: {message}", status.as_u16()))
    }
}

/// Human-readable output: one line per user for listings, else the JSON answer.
pub fn render(action: &Action, answer: &Value) -> String {
    match action {
        Action::ListUsers { .. } => {
            let users = answer["users"].as_array().cloned().unwrap_or_default();
            let mut lines = vec![format!("{:<36}  {:<32}  {:<6}  {}", "id", "email", "conf", "last sign-in")];
            for u in &users {
                lines.push(format!(
                    "{:<36}  {:<32}  {:<6}  {}",
                    u["id"].as_str().unwrap_or(""),
                    u["email"].as_str().filter(|e| !e.is_empty()).or(u["phone"].as_str()).unwrap_or(""),
                    if u["email_confirmed_at"].is_string() || u["phone_confirmed_at"].is_string() {
                        "yes"
                    } else {
                        "no"
                    },
                    u["last_sign_in_at"].as_str().unwrap_or("never"),
                ));
            }
            lines.push(format!("{} user(s) on this page", users.len()));
            lines.join("\n")
        }
        Action::CreateUser { .. } => format!("created {}", answer["id"].as_str().unwrap_or("?")),
        Action::DeleteUser { id } => format!("deleted {id}"),
        Action::BanUser { id, duration } => format!("banned {id} for {duration}"),
        Action::RevokeSessions { id } => format!("revoked every session of {id}"),
    }
}

/// `GET /admin/backup`: the snapshot's bytes, checked before they are returned.
pub async fn fetch_backup(url: &str, token: &str) -> Result<Vec<u8>, String> {
    let base = url.trim_end_matches('/');
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().map_err(|e| e.to_string())?;
    let resp = client
        .get(format!("{base}/admin/backup"))
        .bearer_auth(token)
        .header("X-Supabase-Api-Version", "2024-01-01")
        .send()
        .await
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| format!("backup interrupted: {e}"))?.to_vec();
    if !status.is_success() {
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let message = value["message"].as_str().or(value["msg"].as_str()).unwrap_or("no message");
        return Err(format!("{} {}: {message}", status.as_u16(), value["code"].as_str().unwrap_or("")));
    }
    ferrotrue_actors::storage::backup::entries(&bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}
