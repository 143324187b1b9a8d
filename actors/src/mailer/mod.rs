//! `Mailer`: delivers mail over SMTP with lettre's pooled async transport. Templates, subjects
//! and the email flows arrive with the email issue; delivery, its error reporting and
//! supervision are here now.
//!
//! Auth mails are rendered from [`templates`] here, and the global send budget
//! (`GOTRUE_RATE_LIMIT_EMAIL_SENT`) is enforced here, so every sender shares it.
//!
//! The mailbox never waits on the network: each send runs in its own task that owns the reply
//! port. Implicit TLS on port 465, STARTTLS when the server offers it elsewhere, plain text to a
//! loopback relay. No persisted state (no trees).

pub mod templates;

use crate::call::{call, Reply};
use crate::error::ErrorCode;
use crate::error::{AuthError, AuthResult};
use crate::settings::SmtpSettings;
use crate::ActorEnv;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use templates::{TemplateData, TemplateKind, Templates};
use tokio::sync::watch;

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
    /// Render an auth mail from its template and deliver it, within the global budget.
    SendAuth { kind: TemplateKind, to: String, data: Box<TemplateData>, reply: Reply<()> },
    /// Render `GOTRUE_SMS_TEMPLATE` (`GOTRUE_MFA_PHONE_TEMPLATE` for MFA codes) for `sms.otp`
    /// and deliver it (hook or Twilio), within the global SMS budget and, for MFA codes, one per
    /// destination number per `GOTRUE_MFA_PHONE_MAX_FREQUENCY`; replies with the provider's
    /// message id.
    SendSms { sms: Box<crate::sms::Sms>, reply: Reply<String> },
    /// An auth mail handed to the send_email hook instead of SMTP (same global budget).
    SendEmailHook { payload: Box<serde_json::Value>, reply: Reply<()> },
    /// An MFA code to `phone` recorded at `at` could not be delivered: the number's spacing
    /// window is released (nothing reached it).
    ReleaseMfaTarget { phone: String, at: crate::clock::Timestamp },
}

/// The actor.
pub struct Mailer;

/// The transport (absent when `GOTRUE_SMTP_HOST` is unset), the sender, the templates and the
/// global budget.
pub struct MailerState {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    templates: Arc<Templates>,
    budget: Budget,
    sms: Arc<crate::sms::SmsSettings>,
    sms_budget: Budget,
    sms_template: Arc<minijinja::Environment<'static>>,
    /// Destination numbers of recent MFA codes (see [`crate::sms::RecentTargets`]).
    mfa_targets: crate::sms::RecentTargets,
    clock: crate::clock::Clock,
    http: reqwest::Client,
    /// The settings, for the hooks' transport bounds and the send_email endpoint.
    hooks: Arc<crate::settings::Settings>,
}

/// `GOTRUE_RATE_LIMIT_EMAIL_SENT`.
enum Budget {
    Unlimited,
    Blocked,
    Limited(DefaultDirectRateLimiter),
}

impl Budget {
    fn new(budget: Option<(u32, Duration)>) -> Budget {
        let Some((count, window)) = budget else { return Budget::Unlimited };
        let Some(burst) = NonZeroU32::new(count) else { return Budget::Blocked };
        match Quota::with_period(window / count) {
            Some(q) => Budget::Limited(RateLimiter::direct(q.allow_burst(burst))),
            None => Budget::Unlimited,
        }
    }
    fn take(&self, code: ErrorCode, msg: &'static str) -> AuthResult<()> {
        let exceeded = match self {
            Budget::Unlimited => false,
            Budget::Blocked => true,
            Budget::Limited(limiter) => limiter.check().is_err(),
        };
        if exceeded {
            return Err(AuthError::too_many_requests(code, msg));
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Builds the transport GoTrue's settings describe.
pub fn transport(smtp: &SmtpSettings, timeout: Duration) -> Result<Option<AsyncSmtpTransport<Tokio1Executor>>, String> {
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
    builder = builder.port(smtp.port).timeout(Some(timeout));
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

async fn deliver(
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    mail: Email,
    what: &'static str,
) -> AuthResult<()> {
    let to: Mailbox =
        mail.to.parse().map_err(|e| AuthError::validation(format!("Unable to send email to {}: {e}", mail.to)))?;
    let Some(transport) = transport else {
        // GoTrue's behaviour without GOTRUE_SMTP_HOST: the mail is dropped, the flow goes on.
        tracing::warn!(subject = ?mail.subject, "GOTRUE_SMTP_HOST is not set: mail not sent");
        return Ok(());
    };
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject)
        .header(ContentType::TEXT_HTML)
        .body(mail.html)
        .map_err(|e| AuthError::unexpected(format!("building mail: {e}")))?;
    let sent = transport.send(message).await.map(|_| ()).map_err(|e| {
        // The client gets a clear summary; the log gets lettre's full diagnostics.
        tracing::error!(error = ?e, "SMTP delivery failed");
        AuthError::internal(format!("Error sending {what}: {}", describe(&e)))
    });
    let outcome = if sent.is_ok() { "sent" } else { "failed" };
    metrics::counter!("ferrotrue_mails_total", "outcome" => outcome).increment(1);
    sent
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
        let mail = &env.settings.mail;
        let transport = transport(&env.settings.smtp, mail.smtp_timeout).map_err(|e| format!("SMTP settings: {e}"))?;
        let templates = Templates::compile(&mail.subjects, &mail.templates)?;
        let sms = &env.settings.sms;
        let mut sms_template = minijinja::Environment::new();
        let source = templates::go_to_jinja(&sms.template).map_err(|e| format!("GOTRUE_SMS_TEMPLATE: {e}"))?;
        sms_template.add_template_owned("sms", source).map_err(|e| format!("GOTRUE_SMS_TEMPLATE: {e}"))?;
        let source = templates::go_to_jinja(&env.settings.mfa.phone_template)
            .map_err(|e| format!("GOTRUE_MFA_PHONE_TEMPLATE: {e}"))?;
        sms_template
            .add_template_owned(crate::sms::MFA_SMS_TYPE, source)
            .map_err(|e| format!("GOTRUE_MFA_PHONE_TEMPLATE: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(crate::sms::SMS_HTTP_TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(MailerState {
            transport,
            from: sender(&env.settings.smtp)?,
            templates: Arc::new(templates),
            budget: Budget::new(mail.email_budget),
            sms: Arc::new(sms.clone()),
            sms_budget: Budget::new(sms.budget),
            sms_template: Arc::new(sms_template),
            mfa_targets: crate::sms::RecentTargets::default(),
            clock: env.clock.clone(),
            http,
            hooks: env.settings.clone(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut MailerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MailerMessage::Send { mail, reply } => {
                let (transport, from) = (st.transport.clone(), st.from.clone());
                tokio::spawn(async move {
                    let _ = reply.send(deliver(transport, from, mail, "email").await);
                });
            }
            MailerMessage::SendAuth { kind, to, data, reply } => {
                if let Err(e) = st.budget.take(ErrorCode::OverEmailSendRateLimit, "email rate limit exceeded") {
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                let (subject, html) = match st.templates.render(kind, &data) {
                    Ok(rendered) => rendered,
                    Err(e) => {
                        let _ = reply.send(Err(AuthError::unexpected(e)));
                        return Ok(());
                    }
                };
                if st.transport.is_none() {
                    // No relay (the zero-config start): the mail goes to the log, so a newcomer can
                    // follow the link or type the code. Announced at start-up; never with a relay.
                    tracing::info!(
                        target: "ferrotrue::mail",
                        to = ?to,
                        subject = ?subject,
                        link = ?data.ConfirmationURL,
                        code = ?data.Token,
                        "GOTRUE_SMTP_HOST is not set: mail written to the log instead of sent"
                    );
                    let _ = reply.send(Ok(()));
                    return Ok(());
                }
                let (transport, from) = (st.transport.clone(), st.from.clone());
                let what = match kind {
                    TemplateKind::Confirmation => "confirmation email",
                    TemplateKind::Invite => "invite email",
                    TemplateKind::Recovery => "recovery email",
                    TemplateKind::MagicLink => "magic link email",
                    TemplateKind::EmailChange => "email change email",
                    TemplateKind::Reauthentication => "reauthentication nonce",
                };
                tokio::spawn(async move {
                    let _ = reply.send(deliver(transport, from, Email { to, subject, html }, what).await);
                });
            }
            MailerMessage::ReleaseMfaTarget { phone, at } => st.mfa_targets.release(&phone, at),
            MailerMessage::SendEmailHook { payload, reply } => {
                if let Err(e) = st.budget.take(ErrorCode::OverEmailSendRateLimit, "email rate limit exceeded") {
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                let settings = st.hooks.clone();
                tokio::spawn(async move {
                    let hooks = &settings.hooks;
                    let result = match &hooks.send_email {
                        Some(endpoint) => {
                            crate::hooks::invoke(hooks, crate::hooks::HookName::SendEmail, endpoint, *payload)
                                .await
                                .map(|_| ())
                        }
                        None => Err(AuthError::unexpected("send_email hook is not configured")),
                    };
                    let _ = reply.send(result);
                });
            }
            MailerMessage::SendSms { mut sms, reply } => {
                let mfa = sms.sms_type == crate::sms::MFA_SMS_TYPE;
                let taken_at = st.clock.now();
                if mfa {
                    let spacing = st.hooks.mfa.phone_max_frequency;
                    if let Err(e) = st.mfa_targets.take(&sms.phone, taken_at, spacing) {
                        let _ = reply.send(Err(e));
                        return Ok(());
                    }
                }
                let release = |st: &mut MailerState, phone: &str| {
                    if mfa {
                        st.mfa_targets.release(phone, taken_at);
                    }
                };
                if let Err(e) = st.sms_budget.take(ErrorCode::OverSmsSendRateLimit, "SMS rate limit exceeded") {
                    release(st, &sms.phone);
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                let rendered = st
                    .sms_template
                    .get_template(if mfa { crate::sms::MFA_SMS_TYPE } else { "sms" })
                    .and_then(|t| t.render(minijinja::context! { Code => sms.otp.clone() }));
                match rendered {
                    Ok(body) => sms.body = body,
                    Err(e) => {
                        release(st, &sms.phone);
                        let _ = reply.send(Err(AuthError::unexpected(format!("GOTRUE_SMS_TEMPLATE: {e}"))));
                        return Ok(());
                    }
                }
                let (settings, http, all) = (st.sms.clone(), st.http.clone(), st.hooks.clone());
                tokio::spawn(async move {
                    let phone = sms.phone.clone();
                    let delivered = crate::sms::deliver(&settings, &all.hooks, &http, *sms).await;
                    if mfa && delivered.is_err() {
                        let _ = me.cast(MailerMessage::ReleaseMfaTarget { phone, at: taken_at });
                    }
                    let outcome = if delivered.is_ok() { "sent" } else { "failed" };
                    metrics::counter!("ferrotrue_sms_total", "outcome" => outcome).increment(1);
                    let _ = reply.send(delivered);
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
        call(&actor, self.timeout, |reply| MailerMessage::Send { mail, reply }).await
    }

    /// Renders and delivers an SMS code; 429 `over_sms_send_rate_limit` past the budget,
    /// 422 `sms_send_failed` when the gateway refuses.
    pub async fn send_sms(&self, sms: crate::sms::Sms) -> AuthResult<String> {
        let actor = self.actor.borrow().clone();
        let sms = Box::new(sms);
        call(&actor, self.timeout, |reply| MailerMessage::SendSms { sms, reply }).await
    }

    /// Renders and delivers an auth mail; 429 `over_email_send_rate_limit` past the budget.
    /// Hands an auth mail's payload to the send_email hook (SPEC §11) under the mail budget.
    pub async fn send_email_hook(&self, payload: serde_json::Value) -> AuthResult<()> {
        let actor = self.actor.borrow().clone();
        let payload = Box::new(payload);
        call(&actor, self.timeout, |reply| MailerMessage::SendEmailHook { payload, reply }).await
    }

    pub async fn send_auth(&self, kind: TemplateKind, to: &str, data: TemplateData) -> AuthResult<()> {
        let actor = self.actor.borrow().clone();
        let (to, data) = (to.to_owned(), Box::new(data));
        call(&actor, self.timeout, |reply| MailerMessage::SendAuth { kind, to, data, reply }).await
    }
}

/// True when `address` is an email address lettre can send from or to.
pub fn valid_address(address: &str) -> bool {
    address.parse::<lettre::Address>().is_ok()
}
