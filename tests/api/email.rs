//! Email flows end to end through a real SMTP server (the in-harness sink speaks SMTP over TCP).

use crate::common::*;
use crate::smtp::wait_for;
use serde_json::{json, Value};

#[tokio::test]
async fn signup_confirmation_link_signs_in() {
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.signup.mailer_autoconfirm = false).await;
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(resp.status(), 200);
    let user: Value = resp.json().await.unwrap();
    assert!(user["access_token"].is_null());
    assert!(user["confirmation_sent_at"].is_string());
    let mails = wait_for(&sink, 1).await;
    assert_eq!(mails[0].to, vec![email.clone()]);
    assert_eq!(mails[0].subject(), "Confirm Your Email");
    let link = mails[0].verify_link().expect("a link");
    assert!(link.contains("type=signup"), "{link}");
    // Click the link (do not follow the redirect).
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirects.get(&link).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("http://localhost:3000#access_token="), "{location}");
    assert!(location.contains("&type=signup"), "{location}");
    // Now the password works, and the link is spent.
    server.login(&email).await;
    let again = no_redirects.get(&link).send().await.unwrap();
    let location = again.headers()["location"].to_str().unwrap();
    assert!(location.contains("error_code=otp_expired"), "{location}");
}

#[tokio::test]
async fn signup_code_verifies_over_post() {
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.signup.mailer_autoconfirm = false).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let code = wait_for(&sink, 1).await[0].code().expect("a code");
    let wrong = server.post("/verify", json!({"type": "signup", "email": email, "token": "000000x"})).await;
    assert_error(wrong, 403, "otp_expired").await;
    let resp = server.post("/verify", json!({"type": "signup", "email": email, "token": code})).await;
    assert_eq!(resp.status(), 200);
    let session: Value = resp.json().await.unwrap();
    assert!(session["access_token"].is_string());
    assert!(session["user"]["email_confirmed_at"].is_string());
}
