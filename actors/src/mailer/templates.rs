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
    ///
    /// `Data` is the user's own metadata (anyone signing up chooses it), so its strings are
    /// HTML-escaped before they reach the HTML body — as Go's `html/template` does for GoTrue —
    /// and a subject never carries a line break (no header injection, whatever a template or
    /// the data hold). Server-made values (links, codes) are left as they are.
    pub fn render(&self, kind: TemplateKind, data: &TemplateData) -> Result<(String, String), String> {
        let mut safe = data.clone();
        safe.Data = escape_html_strings(&data.Data);
        let render = |part: &str| {
            self.env
                .get_template(&format!("{}.{part}", kind.name()))
                .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&safe))))
                .map_err(|e| format!("rendering the {} {part}: {e}", kind.name()))
        };
        let subject: String = render("subject")?.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        Ok((subject.trim().to_owned(), render("body")?))
    }
}

/// Every string inside `value` with `& < > " '` replaced by HTML entities.
fn escape_html_strings(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&#34;"),
                    '\'' => out.push_str("&#39;"),
                    c => out.push(c),
                }
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(escape_html_strings).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), escape_html_strings(v))).collect()),
        other => other.clone(),
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
    fn user_metadata_cannot_inject_html_or_headers() {
        let t = Templates::compile(
            &[("confirmation".into(), "Welcome {{ .Data.name }}".into())],
            &[("confirmation".into(), "<p>Hi {{ .Data.name }}</p><a href=\"{{ .ConfirmationURL }}\">go</a>".into())],
        )
        .unwrap();
        let data = TemplateData {
            ConfirmationURL: "http://x/verify?token=abc&type=signup".into(),
            Data: serde_json::json!({"name": "<a href=\"https://evil.example\">click</a>\r\nBcc: all@example.com"}),
            ..Default::default()
        };
        let (subject, body) = t.render(TemplateKind::Confirmation, &data).unwrap();
        assert!(!body.contains("<a href=\"https://evil"), "{body}");
        assert!(body.contains("&lt;a href=&#34;https://evil.example&#34;&gt;click&lt;/a&gt;"), "{body}");
        assert!(body.contains("href=\"http://x/verify?token=abc&type=signup\""), "links stay usable: {body}");
        assert!(!subject.contains('\n') && !subject.contains('\r'), "{subject:?}");
    }

    proptest::proptest! {
        /// Fuzz: any operator template either compiles or is refused with its variable's name —
        /// never a panic; and whatever a user puts in their metadata renders without raw markup.
        #[test]
        fn any_template_compiles_or_is_refused_and_data_never_injects_markup(
            template in "[ -~]{0,80}",
            name in "\\PC{0,40}",
        ) {
            if let Err(e) = Templates::compile(&[], &[("invite".into(), template)]) {
                proptest::prop_assert!(e.starts_with("GOTRUE_MAILER_TEMPLATES_INVITE"), "{}", e);
            }
            let t = Templates::compile(&[], &[("invite".into(), "[{{ .Data.name }}]".into())]).unwrap();
            let data = TemplateData { Data: serde_json::json!({"name": name}), ..Default::default() };
            let (_, body) = t.render(TemplateKind::Invite, &data).unwrap();
            let inner = &body[1..body.len() - 1];
            proptest::prop_assert!(!inner.contains(['<', '>', '"']), "{}", body);
        }
    }

    #[test]
    fn broken_templates_name_their_variable() {
        let err = Templates::compile(&[], &[("invite".into(), "{{ if .Token }}never closed".into())]).err().unwrap();
        assert!(err.starts_with("GOTRUE_MAILER_TEMPLATES_INVITE"), "{err}");
    }
}
