//! `Mailer`: delivers mail over SMTP with lettre's pooled async transport. Templates, subjects
//! and the email flows arrive with the email issue; delivery, its error reporting and
//! supervision are here now.
//!
//! The mailbox never waits on the network: each send runs in its own task that owns the reply
//! port. Implicit TLS on port 465, STARTTLS when the server offers it elsewhere, plain text to a
//! loopback relay. No persisted state (no trees).

use crate::call::{call, Reply};
use crate::error::{AuthError, AuthResult};
use crate::settings::SmtpSettings;
use crate::ActorEnv;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::Duration;
use tokio::sync::watch;

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One message to deliver.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub html: String,
}

/// Everything [`Mailer`] can be asked.
pub enum MailerMessage {
    /// Deliver `mail`; the reply says what went wrong if it could not be delivered.
    Send { mail: Email, reply: Reply<()> },
}

/// The actor.
pub struct Mailer;

/// The transport (absent when `GOTRUE_SMTP_HOST` is unset) and the sender address.
pub struct MailerState {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Builds the transport GoTrue's settings describe.
pub fn transport(smtp: &SmtpSettings) -> Result<Option<AsyncSmtpTransport<Tokio1Executor>>, String> {
    if smtp.host.is_empty() {
        return Ok(None);
    }
    let mut builder = if smtp.port == 465 {
        AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(|e| e.to_string())?
    } else if is_loopback(&smtp.host) {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
    } else {
        let tls = TlsParameters::new(smtp.host.clone()).map_err(|e| e.to_string())?;
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host).tls(Tls::Opportunistic(tls))
    };
    builder = builder.port(smtp.port).timeout(Some(SMTP_TIMEOUT));
    if !smtp.user.is_empty() {
        builder = builder.credentials(Credentials::new(smtp.user.clone(), smtp.pass.expose().to_owned()));
    }
    Ok(Some(builder.build()))
}

/// `GOTRUE_SMTP_ADMIN_EMAIL` with `GOTRUE_SMTP_SENDER_NAME`; the config layer has already
/// checked that the address parses.
fn sender(smtp: &SmtpSettings) -> Result<Mailbox, String> {
    let address = if smtp.admin_email.is_empty() { "noreply@localhost" } else { &smtp.admin_email };
    let name = (!smtp.sender_name.is_empty()).then(|| smtp.sender_name.clone());
    let address = address.parse().map_err(|e| format!("GOTRUE_SMTP_ADMIN_EMAIL: {e}"))?;
    Ok(Mailbox::new(name, address))
}

async fn deliver(transport: Option<AsyncSmtpTransport<Tokio1Executor>>, from: Mailbox, mail: Email) -> AuthResult<()> {
    let Some(transport) = transport else {
        return Err(AuthError::internal("Error sending email: SMTP is not configured (set GOTRUE_SMTP_HOST)"));
    };
    let to: Mailbox =
        mail.to.parse().map_err(|e| AuthError::validation(format!("Unable to send email to {}: {e}", mail.to)))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject)
        .header(ContentType::TEXT_HTML)
        .body(mail.html)
        .map_err(|e| AuthError::unexpected(format!("building mail: {e}")))?;
    transport.send(message).await.map(|_| ()).map_err(|e| {
        // The client gets a clear summary; the log gets lettre's full diagnostics.
        tracing::error!(error = ?e, "SMTP delivery failed");
        AuthError::internal(format!("Error sending email: {}", describe(&e)))
    })
}

fn describe(e: &lettre::transport::smtp::Error) -> String {
    if e.is_permanent() || e.is_transient() {
        format!("the SMTP server refused the message ({e})")
    } else if e.is_timeout() {
        "the SMTP server did not answer in time".to_owned()
    } else if e.is_tls() {
        format!("TLS with the SMTP server failed ({e})")
    } else {
        format!("could not talk to the SMTP server ({e})")
    }
}

impl Actor for Mailer {
    type Msg = MailerMessage;
    type State = MailerState;
    type Arguments = ActorEnv;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, env: ActorEnv) -> Result<MailerState, ActorProcessingErr> {
        let transport = transport(&env.settings.smtp).map_err(|e| format!("SMTP settings: {e}"))?;
        Ok(MailerState { transport, from: sender(&env.settings.smtp)? })
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut MailerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MailerMessage::Send { mail, reply } => {
                let (transport, from) = (st.transport.clone(), st.from.clone());
                tokio::spawn(async move {
                    let _ = reply.send(deliver(transport, from, mail).await);
                });
            }
        }
        Ok(())
    }
}

/// Cheap-to-clone handle to the mailer.
#[derive(Clone)]
pub struct Mail {
    actor: watch::Receiver<ActorRef<MailerMessage>>,
    timeout: Duration,
}

impl Mail {
    pub(crate) fn new(actor: watch::Receiver<ActorRef<MailerMessage>>, timeout: Duration) -> Mail {
        Mail { actor, timeout }
    }
    /// Delivers one message (waits for the SMTP server's answer, bounded by the SMTP timeout).
    pub async fn send(&self, mail: Email) -> AuthResult<()> {
        let actor = self.actor.borrow().clone();
        call(&actor, self.timeout.max(SMTP_TIMEOUT + Duration::from_secs(1)), |reply| MailerMessage::Send {
            mail,
            reply,
        })
        .await
    }
}

/// True when `address` is an email address lettre can send from or to.
pub fn valid_address(address: &str) -> bool {
    address.parse::<lettre::Address>().is_ok()
}
