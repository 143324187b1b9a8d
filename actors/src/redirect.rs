//! `redirect_to` validation (SPEC §7.5), a port of GoTrue's `isRedirectURLValid` semantics made
//! strict: the decision is taken on the URL a browser would navigate to (WHATWG parsing, the `url`
//! crate), never on the raw string.
//!
//! A candidate is refused outright when it contains a control character or whitespace anywhere
//! (browsers strip tabs and newlines, so `https://evil\t.com` is not what it looks like), when it
//! is not of the form `scheme://authority…` (`//host`, `https:host`, `https:/host`, `javascript:`,
//! `data:`), or when its raw authority (between `scheme://` and the first `/`, `?` or `#`) is
//! empty or contains `%`, `\`, `@` (a userinfo part), or non-ASCII (`。`, `．`, `｡` are full stops
//! to a browser), or when the host the browser would use differs from the host as written (IP
//! shorthands such as `0x7f.1`, `127.1` or `2130706433`; non-canonical IPv6).
//!
//! Then a target is accepted when it shares scheme, host and port with `GOTRUE_SITE_URL` (any port
//! on a loopback host), or when its normalised form (lower-case scheme and host, default port
//! dropped, fragment ignored) matches a `GOTRUE_URI_ALLOW_LIST` glob in which `.` and `/` are
//! separators (`*` stays inside one label or segment, `**` crosses them). In the glob's host part
//! every wildcard is confined to the host: it can never match a `/`, `?` or `#`, so the match
//! cannot slide from the authority into the path or query. Globs without `scheme://` name no host
//! and are ignored (with a warning at start). A refused target falls back to the site URL, and the
//! log says why (users ask for that), with the target escaped.

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

/// Which part of a glob a character sits in: wildcards are confined to their part.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Scheme,
    Authority,
    Rest,
}

impl Part {
    /// Regex for `?` (one character), `*` (within a label/segment) and `**` (across them).
    fn wildcards(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Part::Scheme => ("[a-z0-9+\\-]", "[a-z0-9+\\-]*", "[a-z0-9+.\\-]*"),
            Part::Authority => ("[^./?#@\\\\]", "[^./?#@\\\\]*", "[^/?#@\\\\]*"),
            Part::Rest => ("[^./]", "[^./]*", ".*"),
        }
    }
}

/// Translates one allow-list glob into an anchored regex over a normalised URL (no fragment).
/// `None` when the glob names no `scheme://` or is not a valid glob.
pub fn glob_to_regex(glob: &str) -> Option<Regex> {
    let scheme_end = glob.find("://")?;
    let authority_start = scheme_end + 3;
    let path_start = glob[authority_start..].find('/').map_or(glob.len(), |i| authority_start + i);
    // Scheme and host are case-insensitive; the normalised candidate has them in lower case.
    let glob = format!("{}{}", glob[..path_start].to_ascii_lowercase(), &glob[path_start..]);
    let part_at = |i: usize| match i {
        i if i < scheme_end => Part::Scheme,
        i if i >= authority_start && i < path_start => Part::Authority,
        i if i >= path_start => Part::Rest,
        _ => Part::Scheme, // the literal "://"
    };
    let mut re = String::from("^");
    let mut chars = glob.char_indices().peekable();
    let mut in_braces = false;
    while let Some((i, c)) = chars.next() {
        let part = part_at(i);
        let (one, star, double_star) = part.wildcards();
        match c {
            '*' if chars.peek().map(|(_, c)| *c) == Some('*') => {
                chars.next();
                re.push_str(double_star);
            }
            '*' => re.push_str(star),
            '?' => re.push_str(one),
            '[' => {
                let mut class = String::from("[");
                let mut first = true;
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    match c {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '!' if first => class.push('^'),
                        '-' => class.push('-'),
                        c => class.push_str(&regex::escape(&c.to_string())),
                    }
                    first = false;
                }
                if !closed {
                    return None;
                }
                class.push(']');
                if part == Part::Rest {
                    re.push_str(&class);
                } else {
                    // Intersected with what a host (or scheme) may contain: `[[xy]&&[^./?#@\\]]`.
                    re.push_str(&format!("[{class}&&{one}]"));
                }
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
    if path_start == glob.len() {
        // No path in the glob: the normalised URL of `https://host` is `https://host/`. A host part
        // ending in `**` keeps its old meaning of "and anything after it".
        re.push_str(if glob.ends_with("**") { "(?:[/?].*)?" } else { "/?" });
    }
    re.push('$');
    Regex::new(&re).ok()
}

/// Why a candidate is refused before any host or pattern is looked at; `Ok` is the URL the
/// browser would navigate to.
fn parse_strict(candidate: &str) -> Result<Url, &'static str> {
    if candidate.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains a control character or whitespace");
    }
    let scheme_end = candidate.find("://").ok_or("not of the form scheme://host/...")?;
    let scheme = &candidate[..scheme_end];
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err("not of the form scheme://host/...");
    }
    let after = &candidate[scheme_end + 3..];
    let authority = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
    if authority.is_empty() {
        return Err("no host");
    }
    if authority.chars().any(|c| matches!(c, '%' | '\\' | '@') || !c.is_ascii()) {
        return Err("its host part contains %, \\, @ (userinfo) or non-ASCII characters");
    }
    let url = Url::parse(candidate).map_err(|_| "not a valid URL")?;
    // Host as written, then the port: `[v6]:port` or `name:port`, the port all digits.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.find(']') {
            Some(end) => authority.split_at(end + 2),
            None => return Err("not a valid URL"),
        },
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !port_ok {
        return Err("malformed port");
    }
    // What the browser uses must be what was written (no `0x7f.1`, `127.1`, `2130706433`, …).
    if !url.host_str().is_some_and(|parsed| parsed.eq_ignore_ascii_case(host)) {
        return Err("its host is not written in canonical form");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("its host part contains %, \\, @ (userinfo) or non-ASCII characters");
    }
    Ok(url)
}

/// A user-supplied string made safe for one log field: escaped (a newline cannot start a forged
/// log line) and bounded.
pub fn log_safe(s: &str) -> String {
    const MAX: usize = 512;
    let mut cut = s.len().min(MAX);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let escaped = format!("{:?}", &s[..cut]);
    if cut < s.len() {
        format!("{escaped}… ({} bytes)", s.len())
    } else {
        escaped
    }
}

impl RedirectPolicy {
    /// Compiles the allow list; unusable patterns are reported and skipped.
    pub fn new(site_url: &str, allow_list: &[String]) -> RedirectPolicy {
        let patterns = allow_list
            .iter()
            .filter_map(|p| match glob_to_regex(p) {
                Some(re) => Some((p.clone(), re)),
                None => {
                    tracing::warn!(
                        pattern = %p,
                        "GOTRUE_URI_ALLOW_LIST: pattern ignored (not a valid glob of the form scheme://host/...)"
                    );
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
        self.check(candidate).is_ok()
    }

    /// `Ok` when `candidate` may be redirected to, else why not.
    fn check(&self, candidate: &str) -> Result<(), &'static str> {
        let url = parse_strict(candidate)?;
        let host = url.host_str().unwrap_or_default();
        if let Some(site) = &self.site {
            let same_host = url.scheme() == site.scheme() && url.host_str() == site.host_str();
            let port_ok = url.port_or_known_default() == site.port_or_known_default() || is_loopback_host(host);
            if same_host && port_ok {
                return Ok(());
            }
        }
        let bare_ip = url.host().is_some_and(|h| !matches!(h, url::Host::Domain(_)));
        if bare_ip && !is_loopback_host(host) {
            return Err("IP addresses other than loopback are never allowed");
        }
        if matches!(url.scheme(), "http" | "https") {
            let label_ok = host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                && !host.starts_with(['.', '-'])
                && !host.ends_with(['.', '-'])
                && !host.contains("..");
            if !label_ok && !is_loopback_host(host) {
                return Err("its host is not a plain DNS name");
            }
        }
        let mut normalised = url;
        normalised.set_fragment(None);
        if self.patterns.iter().any(|(_, re)| re.is_match(normalised.as_str())) {
            Ok(())
        } else {
            Err("not on GOTRUE_SITE_URL's host and matching no GOTRUE_URI_ALLOW_LIST pattern \
                 (remember `*` stops at `.` and `/`; use `**` to cross them)")
        }
    }

    /// The first acceptable candidate, else the site URL; a refusal is logged with its reason.
    pub fn choose<'a>(&'a self, candidates: impl IntoIterator<Item = &'a str>) -> String {
        for candidate in candidates {
            if candidate.is_empty() {
                continue;
            }
            match self.check(candidate) {
                Ok(()) => return candidate.to_owned(),
                Err(reason) => tracing::warn!(
                    redirect_to = %log_safe(candidate),
                    site_url = %self.site_url,
                    reason,
                    "redirect target refused; using the site URL"
                ),
            }
        }
        self.site_url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(list: &[&str]) -> RedirectPolicy {
        RedirectPolicy::new("http://localhost:3000", &list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn site_url_host_and_loopback_ports() {
        let p = policy(&[]);
        assert!(p.allows("http://localhost:3000/welcome"));
        assert!(p.allows("http://localhost:5173/any"), "loopback: port ignored");
        assert!(p.allows("HTTP://LOCALHOST:3000/x"), "scheme and host are case-insensitive");
        assert!(!p.allows("https://evil.example/"));
        assert!(!p.allows("not a url"));
        assert!(!p.allows("http://localhost.:3000/"), "a trailing dot is another host string");
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
        let p = policy(&["https://{a,b}.example.com/[xy]", "https://[!z]1.example.net/"]);
        assert!(p.allows("https://a.example.com/x"));
        assert!(p.allows("https://b.example.com/y"));
        assert!(!p.allows("https://c.example.com/x"));
        assert!(!p.allows("https://a.example.com/z"));
        assert!(p.allows("https://q1.example.net/"));
        assert!(!p.allows("https://z1.example.net/"), "[!z] is a negated class");
    }

    #[test]
    fn globs_without_a_path_or_scheme() {
        let p = policy(&["https://app.example.com", "https://**", "*.example.org/**"]);
        assert!(p.allows("https://app.example.com"));
        assert!(p.allows("https://app.example.com/"), "normalised: the root path is implied");
        assert!(p.allows("https://anything.example.net/deep/path?x=1"), "host part ending in ** keeps matching after");
        assert!(!p.allows("http://a.example.org/"), "a glob without scheme:// is ignored");
        assert_eq!(p.patterns.len(), 2);
    }

    #[test]
    fn the_issue_bypasses_are_refused() {
        let p = policy(&["https://*.example.com/**"]);
        for hostile in [
            "https://evil%2Ecom?.example.com/",
            "https://evil%2Ecom\\.example.com/",
            "https://evil。com?.example.com/",
            "https://evil\\@a.example.com/",
            "https://evil.com?.example.com/",
            "https://evil.com#.example.com/",
            "https://evil.com/.example.com/",
            "https://a.example.com\\@evil.com",
            "https://a.example.com@evil.com/",
            "https://user:pw@a.example.com/",
            "https://evil.com%23.example.com/",
            "https://evil.com%3F.example.com/",
            "https://evil.com%2F.example.com/",
            "https://evil.com%40a.example.com/",
            "https://evil．com?.example.com/",
            "https://evil｡com?.example.com/",
            "https://a.exa\tmple.com/",
            "https://a.example.com/\n",
            "https://evil.com\n.example.com/",
            "//a.example.com/",
            "https:a.example.com/",
            "https:/a.example.com/",
            "https:///a.example.com/",
            "https://a.example.com./",
            "javascript://a.example.com/%0aalert(1)",
            "javascript:alert(1)//.example.com/",
            "data:text/html,<script>alert(1)</script>.example.com/",
            "https://a.example.com:443x/",
            "https://a.example.com:/",
            "https://[::ffff:7f00:1]/",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://127.1/",
        ] {
            assert!(!p.allows(hostile), "{hostile:?} must be refused");
        }
        for fine in [
            "https://a.example.com/",
            "HTTPS://A.EXAMPLE.COM/",
            "https://a.example.com:443/x",
            "https://a.example.com/path?next=https://evil.com#x",
            "https://xn--bcher-kva.example.com/",
        ] {
            assert!(p.allows(fine), "{fine:?} must be allowed");
        }
    }

    #[test]
    fn loopback_forms() {
        let p = policy(&[]);
        assert!(p.allows("http://localhost:5173"));
        assert!(!p.allows("http://[::1]:3000/"), "another host string than the site's");
        // (`[` opens a glob class, so IPv6 hosts are reached through the site URL, not a glob.)
        let p = RedirectPolicy::new("http://[::1]:3000", &[]);
        assert!(p.allows("http://[::1]:5173/cb"), "loopback: port ignored");
        assert!(!p.allows("http://[0:0::1]:5173/cb"), "non-canonical IPv6");
    }

    #[test]
    fn custom_schemes() {
        let p = policy(&["com.example.app://login-callback", "myapp://**"]);
        assert!(p.allows("com.example.app://login-callback"));
        assert!(p.allows("myapp://anything/deep"));
        assert!(!p.allows("com.example.app://login-callback.evil"));
        assert!(!p.allows("myapp:callback"), "no authority");
    }

    #[test]
    fn choose_falls_back_to_site_url() {
        let p = policy(&[]);
        assert_eq!(p.choose(["https://evil.example/", "http://localhost:3000/ok"]), "http://localhost:3000/ok");
        assert_eq!(p.choose(["https://evil.example/"]), "http://localhost:3000");
    }

    #[test]
    fn log_safe_escapes_and_bounds() {
        let forged = "https://x/\n2026-01-01T00:00:00Z INFO admin logged in";
        let logged = log_safe(forged);
        assert!(!logged.contains('\n') && logged.contains("\\n"), "{logged}");
        assert!(!log_safe("a\r\u{1b}[31mb").contains(['\r', '\u{1b}']));
        let long = "é".repeat(1000);
        let logged = log_safe(&long);
        assert!(logged.len() < 600 && logged.ends_with("(2000 bytes)"), "{logged}");
    }

    /// Pieces attackers combine around the allowed domain.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "https://",
            "http://",
            "myapp://",
            "//",
            "https:",
            "/",
            "\\",
            "@",
            "?",
            "#",
            ":",
            ".",
            "。",
            "．",
            "｡",
            "\t",
            "\n",
            " ",
            "%2E",
            "%2e",
            "%40",
            "%23",
            "%3F",
            "%2F",
            "%5C",
            "example.com",
            "evil.com",
            "a.",
            "evil",
            "callback",
            "443",
            "[",
            "]",
            "::1",
            "localhost",
            "0x7f.1",
            "*",
            "..",
        ])
    }

    fn body() -> impl Strategy<Value = String> {
        prop::collection::vec(piece(), 0..8).prop_map(|p| p.concat())
    }

    fn candidate() -> impl Strategy<Value = String> {
        prop_oneof![
            body(),
            (prop::sample::select(vec!["https://", "http://", "myapp://", "HTTPS://"]), body())
                .prop_map(|(s, b)| format!("{s}{b}")),
            (body(), body()).prop_map(|(a, b)| format!("https://{a}.example.com{b}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Safety: whatever is accepted, the browser lands on the site's host, on a host the
        /// allow list's host part names, or on the custom scheme the list names.
        #[test]
        fn accepted_targets_land_on_allowed_hosts(c in candidate()) {
            let p = RedirectPolicy::new(
                "https://site.example.org",
                &["https://*.example.com/**".to_owned(), "myapp://callback".to_owned(), "https://**.example.net".to_owned()],
            );
            if p.allows(&c) {
                let url = Url::parse(&c).expect("an accepted target parses");
                let host = url.host_str().unwrap_or_default();
                let ok = match url.scheme() {
                    "https" => host == "site.example.org"
                        || host.strip_suffix(".example.com").is_some_and(|l| l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                        || host.strip_suffix(".example.net").is_some_and(|l| l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')),
                    "myapp" => host == "callback",
                    _ => false,
                };
                prop_assert!(ok, "{:?} accepted but the browser goes to {:?}", c, url.as_str());
            }
        }
    }
}
