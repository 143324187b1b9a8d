//! `redirect_to` validation (SPEC §7.5), a port of GoTrue's `isRedirectURLValid` semantics:
//! a target is accepted when it shares scheme, host and port with `GOTRUE_SITE_URL` (any port on
//! a loopback host), or when it matches a `GOTRUE_URI_ALLOW_LIST` glob in which `.` and `/` are
//! separators (`*` stays inside one label or segment, `**` crosses them). A refused target falls
//! back to the site URL, and the log says why (users ask for that).

use regex::Regex;
use url::Url;

/// The compiled allow list plus the site URL.
#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    site_url: String,
    site: Option<Url>,
    patterns: Vec<(String, Regex)>,
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Translates one allow-list glob into an anchored regex.
pub fn glob_to_regex(glob: &str) -> Option<Regex> {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    let mut in_braces = false;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                re.push_str(".*");
            }
            '*' => re.push_str("[^./]*"),
            '?' => re.push_str("[^./]"),
            '[' => {
                re.push('[');
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '^' && re.ends_with('[') {
                        re.push('\\');
                    }
                    re.push(c);
                }
                re.push(']');
            }
            '{' if !in_braces => {
                in_braces = true;
                re.push_str("(?:");
            }
            ',' if in_braces => re.push('|'),
            '}' if in_braces => {
                in_braces = false;
                re.push(')');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).ok()
}

impl RedirectPolicy {
    /// Compiles the allow list; unusable patterns are reported and skipped.
    pub fn new(site_url: &str, allow_list: &[String]) -> RedirectPolicy {
        let patterns = allow_list
            .iter()
            .filter_map(|p| match glob_to_regex(p) {
                Some(re) => Some((p.clone(), re)),
                None => {
                    tracing::warn!(pattern = %p, "GOTRUE_URI_ALLOW_LIST: pattern ignored (not a valid glob)");
                    None
                }
            })
            .collect();
        RedirectPolicy { site_url: site_url.to_owned(), site: Url::parse(site_url).ok(), patterns }
    }

    /// The site URL (the fallback target).
    pub fn site_url(&self) -> &str {
        &self.site_url
    }

    /// True when `candidate` may be redirected to.
    pub fn allows(&self, candidate: &str) -> bool {
        let Ok(url) = Url::parse(candidate) else { return false };
        if let Some(site) = &self.site {
            let same_host = url.scheme() == site.scheme() && url.host_str() == site.host_str();
            let port_ok = url.port_or_known_default() == site.port_or_known_default()
                || url.host_str().is_some_and(is_loopback_host);
            if same_host && port_ok {
                return true;
            }
        }
        if let Some(host) = url.host_str() {
            let bare_ip = host.parse::<std::net::IpAddr>().is_ok()
                || host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok();
            if bare_ip && !is_loopback_host(host) {
                return false;
            }
            if matches!(url.scheme(), "http" | "https") {
                let label_ok = host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                    && !host.starts_with(['.', '-'])
                    && !host.ends_with(['.', '-']);
                if !label_ok && !is_loopback_host(host) {
                    return false;
                }
            }
        }
        let without_fragment = candidate.split('#').next().unwrap_or(candidate);
        self.patterns.iter().any(|(_, re)| re.is_match(without_fragment))
    }

    /// The first acceptable candidate, else the site URL; a refusal is logged with its reason.
    pub fn choose<'a>(&'a self, candidates: impl IntoIterator<Item = &'a str>) -> String {
        for candidate in candidates {
            if candidate.is_empty() {
                continue;
            }
            if self.allows(candidate) {
                return candidate.to_owned();
            }
            tracing::warn!(
                redirect_to = %candidate,
                site_url = %self.site_url,
                "redirect target refused: not on GOTRUE_SITE_URL's host and matching no GOTRUE_URI_ALLOW_LIST \
                 pattern (remember `*` stops at `.` and `/`; use `**` to cross them); using the site URL"
            );
        }
        self.site_url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &[&str]) -> RedirectPolicy {
        RedirectPolicy::new("http://localhost:3000", &list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn site_url_host_and_loopback_ports() {
        let p = policy(&[]);
        assert!(p.allows("http://localhost:3000/welcome"));
        assert!(p.allows("http://localhost:5173/any"), "loopback: port ignored");
        assert!(!p.allows("https://evil.example/"));
        assert!(!p.allows("not a url"));
    }

    #[test]
    fn globs_use_dot_and_slash_as_separators() {
        let p = policy(&["https://*.example.com/*", "https://app.example.org/**", "myapp://callback"]);
        assert!(p.allows("https://preview.example.com/x"));
        assert!(!p.allows("https://a.b.example.com/x"), "* does not cross a dot");
        assert!(!p.allows("https://preview.example.com/a/b"), "* does not cross a slash");
        assert!(p.allows("https://app.example.org/a/b/c"));
        assert!(p.allows("https://app.example.org/a#frag"), "fragment ignored");
        assert!(p.allows("myapp://callback"));
        assert!(!p.allows("https://10.0.0.1/"), "non-loopback IPs never match");
    }

    #[test]
    fn braces_and_classes() {
        let p = policy(&["https://{a,b}.example.com/[xy]"]);
        assert!(p.allows("https://a.example.com/x"));
        assert!(p.allows("https://b.example.com/y"));
        assert!(!p.allows("https://c.example.com/x"));
    }

    #[test]
    fn choose_falls_back_to_site_url() {
        let p = policy(&[]);
        assert_eq!(p.choose(["https://evil.example/", "http://localhost:3000/ok"]), "http://localhost:3000/ok");
        assert_eq!(p.choose(["https://evil.example/"]), "http://localhost:3000");
    }
}
