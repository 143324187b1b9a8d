//! Auth mail templates: built-in defaults (our own wording, keeping the OTP in every body so
//! code-based flows work), GoTrue's default subjects, and operator overrides written in Go
//! template syntax (`{{ .ConfirmationURL }}`, `{{ if .Token }}…{{ end }}`), rendered with
//! minijinja after a small syntax translation. Every template is compiled at start-up, so a
//! broken one stops the server with its variable's name instead of failing the first signup.

use minijinja::Environment;
use regex::Regex;
use serde::Serialize;
use std::sync::OnceLock;

/// The auth mails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    Confirmation,
    Invite,
    Recovery,
    MagicLink,
    EmailChange,
    Reauthentication,
}

impl TemplateKind {
    /// Every kind.
    pub const ALL: [TemplateKind; 6] = [
        TemplateKind::Confirmation,
        TemplateKind::Invite,
        TemplateKind::Recovery,
        TemplateKind::MagicLink,
        TemplateKind::EmailChange,
        TemplateKind::Reauthentication,
    ];

    /// Lower-case name; `GOTRUE_MAILER_TEMPLATES_<NAME>` upper-cases it.
    pub fn name(self) -> &'static str {
        match self {
            TemplateKind::Confirmation => "confirmation",
            TemplateKind::Invite => "invite",
            TemplateKind::Recovery => "recovery",
            TemplateKind::MagicLink => "magic_link",
            TemplateKind::EmailChange => "email_change",
            TemplateKind::Reauthentication => "reauthentication",
        }
    }

    fn default_subject(self) -> &'static str {
        match self {
            TemplateKind::Confirmation => "Confirm Your Email",
            TemplateKind::Invite => "You have been invited",
            TemplateKind::Recovery => "Reset Your Password",
            TemplateKind::MagicLink => "Your Magic Link",
            TemplateKind::EmailChange => "Confirm Email Change",
            TemplateKind::Reauthentication => "Confirm reauthentication",
        }
    }

    fn default_body(self) -> &'static str {
        match self {
            TemplateKind::Confirmation => {
                "<h2>Confirm your email address</h2>\n<p>Open this link to finish signing up:</p>\n\
                 <p><a href=\"{{ .ConfirmationURL }}\">Confirm my email address</a></p>\n\
                 <p>Or enter this code: {{ .Token }}</p>\n"
            }
            TemplateKind::Invite => {
                "<h2>You are invited</h2>\n<p>You have been invited to create an account on {{ .SiteURL }}. \
                 Open this link to accept:</p>\n<p><a href=\"{{ .ConfirmationURL }}\">Accept the invitation</a></p>\n\
                 <p>Or enter this code: {{ .Token }}</p>\n"
            }
            TemplateKind::Recovery => {
                "<h2>Reset your password</h2>\n<p>Open this link to choose a new password:</p>\n\
                 <p><a href=\"{{ .ConfirmationURL }}\">Reset my password</a></p>\n\
                 <p>Or enter this code: {{ .Token }}</p>\n"
            }
            TemplateKind::MagicLink => {
                "<h2>Your sign-in link</h2>\n<p>Open this link to sign in:</p>\n\
                 <p><a href=\"{{ .ConfirmationURL }}\">Sign me in</a></p>\n\
                 <p>Or enter this code: {{ .Token }}</p>\n"
            }
            TemplateKind::EmailChange => {
                "<h2>Confirm your new email address</h2>\n<p>Open this link to change your email address \
                 from {{ .Email }} to {{ .NewEmail }}:</p>\n\
                 <p><a href=\"{{ .ConfirmationURL }}\">Confirm the change</a></p>\n\
                 <p>Or enter this code: {{ .Token }}</p>\n"
            }
            TemplateKind::Reauthentication => {
                "<h2>Confirm it is you</h2>\n<p>Enter this code to continue: {{ .Token }}</p>\n"
            }
        }
    }
}

/// What templates can refer to (GoTrue's names).
#[derive(Debug, Clone, Default, Serialize)]
#[allow(non_snake_case)]
pub struct TemplateData {
    pub SiteURL: String,
    pub ConfirmationURL: String,
    pub Email: String,
    pub NewEmail: String,
    pub SendingTo: String,
    pub Token: String,
    pub TokenHash: String,
    pub RedirectTo: String,
    pub Data: serde_json::Value,
}

/// Translates Go template actions into minijinja syntax.
pub fn go_to_jinja(source: &str) -> Result<String, String> {
    static ACTION: OnceLock<Regex> = OnceLock::new();
    static FIELD: OnceLock<Regex> = OnceLock::new();
    let action = ACTION.get_or_init(|| Regex::new(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}").unwrap_or_else(|_| unreachable!()));
    let field = FIELD.get_or_init(|| Regex::new(r"(^|[\s(!])\.([A-Za-z_])").unwrap_or_else(|_| unreachable!()));
    let mut error = None;
    let out = action.replace_all(source, |caps: &regex::Captures<'_>| {
        let (open_trim, inner, close_trim) = (&caps[1], &caps[2], &caps[3]);
        let expr = |e: &str| field.replace_all(e, "$1$2").into_owned();
        let (open, close) = (format!("{{%{open_trim}"), format!("{close_trim}%}}"));
        if let Some(cond) = inner.strip_prefix("if ") {
            format!("{open} if {} {close}", expr(cond))
        } else if let Some(cond) = inner.strip_prefix("else if ") {
            format!("{open} elif {} {close}", expr(cond))
        } else if inner == "else" {
            format!("{open} else {close}")
        } else if inner == "end" {
            format!("{open} endif {close}")
        } else if inner.starts_with("range ") || inner.starts_with("with ") || inner.starts_with("define ") {
            error = Some(format!(
                "unsupported Go template action `{{{{ {inner} }}}}` (only fields and if/else are supported)"
            ));
            String::new()
        } else if inner.starts_with("/*") {
            String::new()
        } else {
            format!("{{{{{open_trim} {} {close_trim}}}}}", expr(inner))
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(out.into_owned()),
    }
}

/// The compiled subjects and bodies.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles defaults plus overrides; an error names the offending variable.
    pub fn compile(subjects: &[(String, String)], bodies: &[(String, String)]) -> Result<Templates, String> {
        let mut env = Environment::new();
        for kind in TemplateKind::ALL {
            let name = kind.name();
            let subject = subjects.iter().find(|(k, _)| k == name).map_or(kind.default_subject(), |(_, v)| v);
            let body = bodies.iter().find(|(k, _)| k == name).map_or(kind.default_body(), |(_, v)| v);
            for (part, source, var) in [("subject", subject, "SUBJECTS"), ("body", body, "TEMPLATES")] {
                let variable = format!("GOTRUE_MAILER_{var}_{}", name.to_uppercase());
                let jinja = go_to_jinja(source).map_err(|e| format!("{variable}: {e}"))?;
                env.add_template_owned(format!("{name}.{part}"), jinja)
                    .map_err(|e| format!("{variable}: template does not compile: {e}"))?;
            }
        }
        Ok(Templates { env })
    }

    /// Subject and HTML body for `kind`.
    pub fn render(&self, kind: TemplateKind, data: &TemplateData) -> Result<(String, String), String> {
        let render = |part: &str| {
            self.env
                .get_template(&format!("{}.{part}", kind.name()))
                .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(data))))
                .map_err(|e| format!("rendering the {} {part}: {e}", kind.name()))
        };
        Ok((render("subject")?.trim().to_owned(), render("body")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_go_syntax() {
        assert_eq!(go_to_jinja("{{ .Token }}").unwrap(), "{{ Token }}");
        assert_eq!(go_to_jinja("{{ .Data.name }}").unwrap(), "{{ Data.name }}");
        assert_eq!(
            go_to_jinja("{{ if .Token }}x{{ else }}y{{ end }}").unwrap(),
            "{% if Token %}x{% else %}y{% endif %}"
        );
        assert!(go_to_jinja("{{ range .Items }}{{ end }}").is_err());
    }

    #[test]
    fn renders_defaults_and_overrides() {
        let t = Templates::compile(
            &[("recovery".into(), "Reset for {{ .Email }}".into())],
            &[(
                "confirmation".into(),
                "<a href=\"{{ .ConfirmationURL }}\">go</a> {{ if .Data.name }}hi {{ .Data.name }}{{ end }}".into(),
            )],
        )
        .unwrap();
        let data = TemplateData {
            ConfirmationURL: "http://x/verify?token=abc".into(),
            Email: "ann@example.com".into(),
            Token: "123456".into(),
            Data: serde_json::json!({"name": "Ann"}),
            ..Default::default()
        };
        let (subject, body) = t.render(TemplateKind::Confirmation, &data).unwrap();
        assert_eq!(subject, "Confirm Your Email");
        assert_eq!(body, "<a href=\"http://x/verify?token=abc\">go</a> hi Ann");
        let (subject, body) = t.render(TemplateKind::Recovery, &data).unwrap();
        assert_eq!(subject, "Reset for ann@example.com");
        assert!(body.contains("123456") && body.contains("http://x/verify?token=abc"));
    }

    #[test]
    fn broken_templates_name_their_variable() {
        let err = Templates::compile(&[], &[("invite".into(), "{{ if .Token }}never closed".into())]).err().unwrap();
        assert!(err.starts_with("GOTRUE_MAILER_TEMPLATES_INVITE"), "{err}");
    }
}
