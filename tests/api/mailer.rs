//! The Mailer actor delivers over real SMTP and reports failures clearly.

use crate::common::TestServer;
use crate::smtp::SmtpSink;
use ferrotrue_actors::error::ErrorCode;
use ferrotrue_actors::mailer::Email;

fn email(to: &str) -> Email {
    Email { to: to.into(), subject: "Hello from ferrotrue".into(), html: "<p>It works.</p>".into() }
}

#[tokio::test]
async fn delivers_to_a_real_smtp_server() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let server = TestServer::start_with(|c| {
        c.settings.smtp.host = "127.0.0.1".into();
        c.settings.smtp.port = port;
        c.settings.smtp.admin_email = "auth@example.com".into();
        c.settings.smtp.sender_name = "Example Auth".into();
    })
    .await;
    server.actors.mail.send(email("ann@example.com")).await.expect("delivered");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.from, "auth@example.com");
    assert_eq!(m.to, vec!["ann@example.com".to_owned()]);
    assert!(m.data.contains("Subject: Hello from ferrotrue"), "{}", m.data);
    assert!(m.data.contains("Example Auth"), "{}", m.data);
    assert!(m.data.contains("It works."), "{}", m.data);
}

#[tokio::test]
async fn unreachable_smtp_is_a_clear_error_not_a_hang() {
    // A port nobody listens on: bind, note the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = TestServer::start_with(|c| {
        c.settings.smtp.host = "127.0.0.1".into();
        c.settings.smtp.port = port;
    })
    .await;
    let err = server.actors.mail.send(email("ann@example.com")).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::UnexpectedFailure);
    assert!(err.msg.contains("SMTP"), "{}", err.msg);
    // The server is still healthy.
    let health = server.http.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn without_smtp_mail_is_dropped_as_gotrue_does() {
    // GoTrue with no GOTRUE_SMTP_HOST drops mail and goes on; so do we (with a warning).
    let server = TestServer::start().await;
    server.actors.mail.send(email("ann@example.com")).await.expect("dropped, not failed");
}

#[tokio::test]
async fn a_bad_recipient_is_a_client_error() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let server = TestServer::start_with(|c| {
        c.settings.smtp.host = "127.0.0.1".into();
        c.settings.smtp.port = port;
    })
    .await;
    let err = server.actors.mail.send(email("not an address")).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationFailed);
    assert!(sink.messages().is_empty());
}
