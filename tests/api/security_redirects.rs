//! Issue 9 §3: `redirect_to` is decided on the URL a browser would navigate to. Every hostile
//! target falls back to the site URL, every legitimate one is kept, for allow lists with and
//! without `*.` wildcards. Driven through the real server: `POST /admin/generate_link` (which
//! echoes the chosen `redirect_to` and puts it in the action link) for the whole table, and the
//! mailed link of `POST /magiclink` for the bypasses.

use crate::common::{service_role_token, unique_email, TestServer};
use crate::smtp::wait_for_to;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const SITE: &str = "http://localhost:3000";

/// Targets no allow list below may ever accept.
const HOSTILE: &[&str] = &[
    // The bypasses.
    "https://evil%2Ecom?.example.com/",
    "https://evil%2Ecom\\.example.com/",
    "https://evil。com?.example.com/",
    "https://evil\\@a.example.com/",
    // The host part ending early: query, fragment, path.
    "https://evil.com?.example.com/",
    "https://evil.com#.example.com/",
    "https://evil.com/.example.com/",
    "https://evil.com?a.example.com/x",
    // Encoded delimiters in the host.
    "https://evil.com%23.example.com/",
    "https://evil.com%3F.example.com/",
    "https://evil.com%2F.example.com/",
    "https://evil.com%40a.example.com/",
    "https://evil.com%2ea.example.com/",
    // IDN full stops.
    "https://evil．com?.example.com/",
    "https://evil｡com?.example.com/",
    "https://a.example。com/",
    // Userinfo and backslashes.
    "https://a.example.com@evil.com/",
    "https://a.example.com\\@evil.com",
    "https://a.example.com\\evil.com",
    "https://user:pass@a.example.com/",
    "https://a.example.com:x@evil.com/",
    // Tabs, newlines, spaces (browsers strip or split on them).
    "https://evil.com\t.example.com/",
    "https://evil.com\n.example.com/",
    "https://a.example.com/\r\nSet-Cookie: x=1",
    "https://a.exa mple.com/",
    " https://a.example.com/",
    // Not scheme://host.
    "//evil.com/",
    "//a.example.com/",
    "https:evil.com",
    "https:/evil.com",
    "https:///evil.com",
    "https:a.example.com/",
    "https:/a.example.com/",
    "/relative/path",
    "javascript:alert(document.domain)//a.example.com/",
    "javascript://a.example.com/%0aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "data://a.example.com/x",
    // Trailing dots and other spellings of hosts.
    "https://a.example.com./",
    "https://evil.com./.example.com/",
    "https://a..example.com/",
    // IP literals and shorthands.
    "http://0x7f.1/",
    "http://2130706433/",
    "http://127.1/",
    "http://0177.0.0.1/",
    "http://10.0.0.1/",
    "http://[::ffff:a00:1]/",
    "http://[0:0::1]/",
    // Ports that are not ports.
    "https://a.example.com:443@evil.com/",
    "https://a.example.com:/",
    "https://a.example.com:44a/",
    // Other hosts outright.
    "https://evil.com/",
    "https://example.com.evil.com/",
    "https://a.example.com.evil.com/",
    "https://evilexample.com/",
    "http://a.example.com/",
];

/// Allow lists with and without `*.`, each with what it must keep working.
fn cases() -> Vec<(Vec<&'static str>, Vec<&'static str>)> {
    vec![
        (
            vec!["https://*.example.com/**", "myapp://callback", "com.example.app://login-callback"],
            vec![
                "https://a.example.com/",
                "https://a.example.com",
                "https://a-b.example.com/deep/path?x=1&next=https://evil.com#frag",
                "HTTPS://A.EXAMPLE.COM/Case",
                "https://a.example.com:443/x",
                "myapp://callback",
                "com.example.app://login-callback",
                "http://localhost:3000/welcome",
                "http://localhost:5173/dev",
                "http://localhost:5173",
            ],
        ),
        (
            vec!["https://app.example.com/**", "https://{a,b}.example.com/[xy]"],
            vec![
                "https://app.example.com/auth/callback",
                "https://app.example.com/a/b/c?d=e",
                "https://a.example.com/x",
                "https://b.example.com/y",
                "http://localhost:3000",
            ],
        ),
        (vec![], vec!["http://localhost:3000/ok", "http://localhost:8080/"]),
    ]
}

/// The `redirect_to` the server settles on for `candidate`, via generate_link.
async fn chosen(server: &TestServer, candidate: &str) -> String {
    let resp = server
        .request(Method::POST, "/admin/generate_link")
        .bearer_auth(service_role_token())
        .json(&json!({"type": "magiclink", "email": unique_email(), "redirect_to": candidate}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK, "{candidate:?}");
    let body: Value = resp.json().await.expect("json");
    let link = url::Url::parse(body["action_link"].as_str().expect("action_link")).expect("link");
    let in_link = link.query_pairs().find(|(k, _)| k == "redirect_to").map(|(_, v)| v.into_owned());
    let chosen = body["redirect_to"].as_str().expect("redirect_to").to_owned();
    assert_eq!(in_link.as_deref(), Some(chosen.as_str()), "the link carries the chosen target");
    chosen
}

#[tokio::test]
async fn hostile_targets_fall_back_and_legitimate_ones_are_kept() {
    for (list, legitimate) in cases() {
        let server = TestServer::start_with(|c| {
            c.settings.mail.site_url = SITE.into();
            c.settings.mail.uri_allow_list = list.iter().map(|s| (*s).to_owned()).collect();
        })
        .await;
        for hostile in HOSTILE {
            assert_eq!(chosen(&server, hostile).await, SITE, "{hostile:?} must fall back with {list:?}");
        }
        for fine in legitimate {
            assert_eq!(chosen(&server, fine).await, fine, "{fine:?} must be kept with {list:?}");
        }
    }
}

#[tokio::test]
async fn the_mailed_link_never_carries_a_hostile_target() {
    let (server, sink) = TestServer::start_with_mail(|c| {
        c.settings.mail.site_url = SITE.into();
        c.settings.mail.uri_allow_list = vec!["https://*.example.com/**".into()];
        c.settings.smtp.max_frequency = Duration::ZERO;
    })
    .await;
    let targets = [
        ("https://evil%2Ecom?.example.com/", SITE),
        ("https://evil%2Ecom\\.example.com/", SITE),
        ("https://evil。com?.example.com/", SITE),
        ("https://evil\\@a.example.com/", SITE),
        ("https://evil.com\n.example.com/", SITE),
        ("https://ok.example.com/cb", "https://ok.example.com/cb"),
    ];
    for (candidate, expected) in targets {
        let email = unique_email();
        let path = format!("/magiclink?redirect_to={}", urlencode(candidate));
        let resp = server.post(&path, json!({"email": email})).await;
        assert_eq!(resp.status(), StatusCode::OK, "{candidate:?}");
        let link = wait_for_to(&sink, &email, 1).await[0].verify_link().expect("a link in the mail");
        let link = url::Url::parse(&link).expect("link");
        let in_link = link.query_pairs().find(|(k, _)| k == "redirect_to").map(|(_, v)| v.into_owned());
        assert!(
            in_link.as_deref() == Some(expected) || (expected == SITE && in_link.is_none()),
            "{candidate:?} gave {in_link:?}"
        );
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
