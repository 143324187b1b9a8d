//! Account resolution for external identities (GoTrue `createAccountFromExternalIdentity`,
//! models/linking.go `DetermineAccountLinking`, `linkIdentityToUser`, SPEC §7.6).
//!
//! An existing identity signs its user in; otherwise the provider's verified emails link the
//! identity to the one account holding them, or a new account is created. An account that was
//! never confirmed keeps only the new identity when it is confirmed through it: no password, no
//! other identity, so a pre-registered password cannot survive as a back door.

use crate::error::{AuthError, AuthResult, Detail, ErrorCode, DUPLICATE_EMAIL_MSG};
use crate::flows::email::{check_spacing, send_link, Link, LinkKind};
use crate::flows::signup::{confirm, Channel};
use crate::flows::{audit, AuditActor};
use crate::oauth::{ProviderEmail, UserData};
use crate::user_registry::model::{Identity, JsonText, User};
use crate::Actors;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// What account resolution needs from the request.
pub(super) struct Context<'a> {
    pub aud: &'a str,
    pub email_optional: bool,
    /// Where a confirmation mail's link leads.
    pub redirect_to: &'a str,
}

/// GoTrue's account linking decision.
enum Decision {
    Exists,
    Link(Box<User>),
    Create,
}

/// SPEC §7.6 / GoTrue `createAccountFromExternalIdentity`: sign in the identity's user, link
/// the identity to the one account holding a verified email of it, or create an account; then
/// the ban check and the confirmation rules.
pub(super) async fn create_or_link(a: &Actors, provider: &str, data: &UserData, cx: &Context<'_>) -> AuthResult<User> {
    let sub = data.subject().to_owned();
    if sub.is_empty() {
        return Err(AuthError::internal("Error getting user profile from external provider")
            .with_source(Detail("the provider reported no subject".into())));
    }
    let autoconfirm = a.settings.signup.mailer_autoconfirm;
    let now = a.clock.now();
    let identity_data = data.identity_data();
    let mut verified: Vec<String> = Vec::new();
    let mut candidate = ProviderEmail { email: String::new(), verified: false, primary: false };
    for e in &data.emails {
        if e.verified || autoconfirm {
            verified.push(e.email.to_lowercase());
        }
        if e.primary {
            candidate = ProviderEmail { email: e.email.to_lowercase(), ..e.clone() };
        }
    }

    let existing = a.users.by_identity(provider, &sub).await?;
    let decision = match &existing {
        Some(user) => {
            candidate.email.clone_from(&user.email);
            Decision::Exists
        }
        None => decide(a, &verified).await?,
    };
    let user = match decision {
        Decision::Exists => {
            let user = existing.ok_or_else(|| AuthError::unexpected("identity owner vanished"))?;
            let (provider, sub, data) = (provider.to_owned(), sub.clone(), identity_data.clone());
            a.users
                .update(user.id, move |u| {
                    if let Some(i) = u.identities.iter_mut().find(|i| i.provider == provider && i.provider_id == sub) {
                        i.identity_data = JsonText::from_map(&data);
                        i.last_sign_in_at = Some(now);
                        i.updated_at = now;
                    }
                    merge_metadata(u, &data);
                    set_providers(u);
                    Ok(())
                })
                .await?
        }
        Decision::Link(user) => {
            let identity = new_identity(provider, &sub, &identity_data, now);
            let (identity_id, data) = (identity.id, identity_data.clone());
            let user = a
                .users
                .update(user.id, move |u| {
                    u.identities.push(identity);
                    merge_metadata(u, &data);
                    set_providers(u);
                    Ok(())
                })
                .await?;
            let identity_id = identity_id.to_string();
            let traits = [("identity_id", identity_id.as_str()), ("provider", provider), ("provider_id", sub.as_str())];
            audit(a, AuditActor::User(&user), "identity_linked", &traits).await?;
            user
        }
        Decision::Create => {
            if a.settings.signup.disable_signup {
                return Err(AuthError::unprocessable(
                    ErrorCode::SignupDisabled,
                    "Signups not allowed for this instance",
                ));
            }
            // An address someone else holds stays with them (GoTrue: `IsDuplicatedEmail`).
            if !candidate.email.is_empty() && a.users.by_email(&candidate.email).await?.is_some() {
                candidate.email.clear();
            }
            let user = new_external_user(a, provider, &sub, &candidate.email, &identity_data, cx.aud);
            crate::flows::create_user(a, user).await?
        }
    };

    if user.is_banned(now) {
        return Err(AuthError::forbidden(ErrorCode::UserBanned, "User is banned"));
    }
    let has_emails = !(cx.email_optional && candidate.email.is_empty());
    if !has_emails || user.email_confirmed_at.is_some() {
        return Ok(user);
    }
    let (p, s) = (provider.to_owned(), sub.clone());
    let user = a.users.update(user.id, move |u| remove_unconfirmed_identities(u, &p, &s)).await?;
    if candidate.verified || autoconfirm {
        audit(a, AuditActor::User(&user), "user_signedup", &[("provider", provider)]).await?;
        return a
            .users
            .update(user.id, move |u| {
                confirm(u, Channel::Email, now);
                Ok(())
            })
            .await;
    }
    let sent = !user.email.is_empty();
    if sent {
        send_confirmation(a, &user, cx.redirect_to).await?;
    }
    if a.settings.oauth.allow_unverified_email_sign_ins {
        return Ok(user);
    }
    let msg = if sent {
        format!("Unverified email with {provider}. A confirmation email has been sent to your {provider} email")
    } else {
        format!("Unverified email with {provider}. Verify the email with {provider} in order to sign in")
    };
    Err(AuthError::unprocessable(ErrorCode::ProviderEmailNeedsVerification, msg))
}

/// GoTrue's `DetermineAccountLinking` once no identity matched.
async fn decide(a: &Actors, verified: &[String]) -> AuthResult<Decision> {
    if verified.is_empty() {
        return Ok(Decision::Create);
    }
    let found = a.users.link_candidates(verified).await?;
    let multiple = || {
        AuthError::internal(
            "Multiple accounts with the same email address in the same linking domain detected: default",
        )
    };
    match found.identity_owners.as_slice() {
        [] => match found.users.as_slice() {
            [] => Ok(Decision::Create),
            [user] => Ok(Decision::Link(Box::new(user.clone()))),
            _ => Err(multiple()),
        },
        [owner] => {
            let user = a.users.get(*owner).await?.ok_or_else(|| AuthError::unexpected("identity owner vanished"))?;
            Ok(Decision::Link(Box::new(user)))
        }
        _ => Err(multiple()),
    }
}

/// Sends the signup confirmation mail for an unverified provider email (GoTrue:
/// `sendConfirmation`), and stamps `confirmation_sent_at`.
async fn send_confirmation(a: &Actors, user: &User, redirect_to: &str) -> AuthResult<()> {
    check_spacing(a, user.confirmation_sent_at)?;
    let link = Link { kind: LinkKind::Signup, address: &user.email, redirect_to, pkce: None, new_email: "" };
    send_link(a, user, link).await?;
    audit(a, AuditActor::User(user), "user_confirmation_requested", &[]).await?;
    let now = a.clock.now();
    a.users
        .update(user.id, move |u| {
            u.confirmation_sent_at = Some(now);
            Ok(())
        })
        .await?;
    Ok(())
}

/// GoTrue's `RemoveUnconfirmedIdentities`: an unconfirmed account that an OAuth identity is
/// about to confirm keeps only that identity — no password (unless the identity is the email
/// one), no other identities, no unconfirmed phone — and its metadata becomes the identity's.
fn remove_unconfirmed_identities(u: &mut User, provider: &str, sub: &str) -> AuthResult<()> {
    if provider != "email" && provider != "phone" {
        u.encrypted_password = None;
    }
    u.identities.retain(|i| i.provider == provider && i.provider_id == sub);
    if let Some(i) = u.identities.first() {
        u.user_metadata = i.identity_data.clone();
    }
    if u.phone_confirmed_at.is_none() {
        u.phone.clear();
    }
    let mut app = u.app_metadata.to_map();
    app.remove("provider");
    u.app_metadata = JsonText::from_map(&app);
    set_providers(u);
    Ok(())
}

/// GoTrue's `UpdateUserMetaData`: the identity's claims overwrite same-named keys.
fn merge_metadata(u: &mut User, data: &Map<String, Value>) {
    let mut meta = u.user_metadata.to_map();
    for (k, v) in data {
        if v.is_null() {
            meta.remove(k);
        } else {
            meta.insert(k.clone(), v.clone());
        }
    }
    u.user_metadata = JsonText::from_map(&meta);
}

/// `app_metadata.providers` from the identities; `provider` kept while it still applies.
pub(super) fn set_providers(u: &mut User) {
    let mut list: Vec<String> = Vec::new();
    for i in &u.identities {
        if !list.contains(&i.provider) {
            list.push(i.provider.clone());
        }
    }
    let mut app = u.app_metadata.to_map();
    let current = app.get("provider").and_then(Value::as_str).map(str::to_owned);
    if let Some(first) = list.first() {
        if current.is_none_or(|c| !list.contains(&c)) {
            app.insert("provider".into(), json!(first));
        }
    }
    app.insert("providers".into(), json!(list));
    u.app_metadata = JsonText::from_map(&app);
}

fn new_identity(provider: &str, sub: &str, data: &Map<String, Value>, now: crate::clock::Timestamp) -> Identity {
    let email = data.get("email").and_then(Value::as_str).unwrap_or_default().to_lowercase();
    Identity {
        id: Uuid::new_v4(),
        provider_id: sub.to_owned(),
        provider: provider.to_owned(),
        identity_data: JsonText::from_map(data),
        email,
        last_sign_in_at: Some(now),
        created_at: now,
        updated_at: now,
    }
}

/// A new account for an external identity (GoTrue: `signupNewUser` + `createNewIdentity`):
/// no password, `app_metadata.provider` = the provider, `user_metadata` = its claims.
fn new_external_user(a: &Actors, provider: &str, sub: &str, email: &str, data: &Map<String, Value>, aud: &str) -> User {
    let now = a.clock.now();
    let mut app = Map::new();
    app.insert("provider".into(), json!(provider));
    app.insert("providers".into(), json!([provider]));
    User {
        email: email.to_owned(),
        app_metadata: JsonText::from_map(&app),
        user_metadata: JsonText::from_map(data),
        identities: vec![new_identity(provider, sub, data, now)],
        ..User::blank(aud, &a.settings.jwt.default_group, now)
    }
}

/// Manual linking (GoTrue `linkIdentityToUser`): adds the identity to `target`; a user
/// without an email (anonymous) takes the identity's, confirmed only if the provider
/// verified it.
pub(super) async fn link_identity_to_user(
    a: &Actors,
    target: User,
    provider: &str,
    data: &UserData,
    cx: &Context<'_>,
) -> AuthResult<User> {
    let sub = data.subject().to_owned();
    if sub.is_empty() {
        return Err(AuthError::internal("Error getting user profile from external provider")
            .with_source(Detail("the provider reported no subject".into())));
    }
    if let Some(owner) = a.users.by_identity(provider, &sub).await? {
        let msg = if owner.id == target.id {
            "Identity is already linked"
        } else {
            "Identity is already linked to another user"
        };
        return Err(AuthError::unprocessable(ErrorCode::IdentityAlreadyExists, msg));
    }
    let now = a.clock.now();
    let identity = new_identity(provider, &sub, &data.identity_data(), now);
    let identity_id = identity.id.to_string();
    let user = a
        .users
        .update(target.id, move |u| {
            u.identities.push(identity);
            set_providers(u);
            Ok(())
        })
        .await?;
    let traits = [("identity_id", identity_id.as_str()), ("provider", provider), ("provider_id", sub.as_str())];
    audit(a, AuditActor::User(&user), "identity_linked", &traits).await?;
    if !user.email.is_empty() {
        return Ok(user);
    }
    let Some(email) = email_from_identities(a, &user).await? else {
        return Err(AuthError::bad_request(ErrorCode::EmailExists, DUPLICATE_EMAIL_MSG));
    };
    let user = a
        .users
        .update(user.id, move |u| {
            u.email = email;
            Ok(())
        })
        .await?;
    if !data.claims.email_verified {
        send_confirmation(a, &user, cx.redirect_to).await?;
        return Err(AuthError::unprocessable(
            ErrorCode::EmailNotConfirmed,
            format!("Unverified email with {provider}. A confirmation email has been sent to your {provider} email"),
        ));
    }
    a.users
        .update(user.id, move |u| {
            confirm(u, Channel::Email, now);
            u.is_anonymous = false;
            Ok(())
        })
        .await
}

/// GoTrue's `UpdateUserEmailFromIdentities` choice: identities with a provider-verified
/// email first, then unverified ones, oldest first; the first address nobody else holds.
pub(super) async fn email_from_identities(a: &Actors, user: &User) -> AuthResult<Option<String>> {
    let verified = |i: &Identity| i.identity_data.to_map().get("email_verified").and_then(Value::as_bool) == Some(true);
    let mut ranked: Vec<&Identity> = user.identities.iter().filter(|i| !i.email.is_empty()).collect();
    ranked.sort_by_key(|i| (!verified(i), i.created_at, i.id));
    for i in ranked {
        match a.users.by_email(&i.email).await? {
            Some(holder) if holder.id != user.id => continue,
            _ => return Ok(Some(i.email.clone())),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    fn identity(provider: &str, sub: &str) -> Identity {
        new_identity(provider, sub, &Map::new(), Timestamp(1))
    }

    #[test]
    fn providers_follow_the_identities() {
        let mut u = new_user_for_test();
        u.identities = vec![identity("email", "1"), identity("github", "2")];
        set_providers(&mut u);
        let app = u.app_metadata.to_map();
        assert_eq!(app["provider"], "email");
        assert_eq!(app["providers"], json!(["email", "github"]));
        u.identities.remove(0);
        set_providers(&mut u);
        assert_eq!(u.app_metadata.to_map()["provider"], "github", "a provider that is gone is replaced");
    }

    #[test]
    fn unconfirmed_accounts_keep_only_the_new_identity() {
        let mut u = new_user_for_test();
        u.encrypted_password = Some("$argon2id$attacker".into());
        u.phone = "15555550100".into();
        u.identities = vec![identity("email", "1"), identity("github", "2")];
        u.identities[1].identity_data = JsonText(r#"{"sub":"2","name":"Real"}"#.into());
        remove_unconfirmed_identities(&mut u, "github", "2").unwrap();
        assert!(u.encrypted_password.is_none());
        assert!(u.phone.is_empty());
        assert_eq!(u.identities.len(), 1);
        assert_eq!(u.user_metadata.to_map()["name"], "Real");
        assert_eq!(u.app_metadata.to_map()["providers"], json!(["github"]));
        assert_eq!(u.app_metadata.to_map()["provider"], "github");
    }

    fn new_user_for_test() -> User {
        User {
            email: "a@example.com".into(),
            app_metadata: JsonText(r#"{"provider":"email"}"#.into()),
            ..User::blank("authenticated", "authenticated", Timestamp(1))
        }
    }
}
