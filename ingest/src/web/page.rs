//! The HTML of the approval page and the headers every response of the web door carries.
//!
//! No script runs on these pages and nothing is loaded from anywhere: the one stylesheet is
//! inline and allowed by its hash in the Content-Security-Policy, forms may post only to this
//! origin, and no page may be framed. Every value from the request record is escaped.

use std::sync::LazyLock;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use grantline_shared::cards::{ApprovalView, ViewStatus};
use sha2::{Digest, Sha256};

use crate::error::ErrorCode;

/// The page's only stylesheet (inline, allowed by hash).
const STYLE: &str = "\
body{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1b1f24}\
main{max-width:44rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.15)}\
h1{font-size:1.35rem;margin:0 0 1rem}h2{font-size:1rem;margin:1.5rem 0 .5rem}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:0}dt{font-weight:600;color:#57606a}dd{margin:0}\
ul.checks{list-style:none;padding:0;margin:0}ul.checks li{margin:.2rem 0}li.pass::before{content:\"\\2714  \";color:#1a7f37}\
li.fail::before{content:\"\\2716  \";color:#cf222e}\
.status{font-weight:600;margin:1.25rem 0}.who{color:#57606a;font-size:.9rem;margin:0 0 1rem}\
label{display:block;font-weight:600;margin:1rem 0 .35rem}\
textarea{width:100%;box-sizing:border-box;font:inherit;padding:.5rem;border:1px solid #8c959f;border-radius:6px}\
.buttons{display:flex;gap:.75rem;margin-top:1rem}\
button{font:inherit;font-weight:600;padding:.55rem 1.4rem;border-radius:6px;border:1px solid transparent;cursor:pointer}\
button.approve{background:#1f883d;color:#fff}button.reject{background:#fff;color:#cf222e;border-color:#cf222e}\
.error{color:#cf222e}\
";

/// The base64 (standard alphabet, padded) of bytes: the form CSP hashes are written in.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The Content-Security-Policy of every page: nothing but the inline stylesheet above.
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64(&Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
});

/// Adds the strict headers to any response of the web door (pages and redirects alike).
pub fn harden(resp: Response) -> Response {
    harden_with(resp, &CSP)
}

/// Adds the strict headers with this Content-Security-Policy.
pub(crate) fn harden_with(mut resp: Response, csp: &str) -> Response {
    let h = resp.headers_mut();
    let csp = HeaderValue::from_str(csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    resp
}

/// Escapes text for HTML content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A whole HTML document around `body`.
fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n",
        esc(title)
    )
}

/// An HTML response with the strict headers; a refusal also carries its stable code for the
/// edge's metrics and logs.
pub fn html(status: StatusCode, code: Option<&'static str>, title: &str, body: &str) -> Response {
    let mut resp =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], document(title, body))
            .into_response();
    if let Some(code) = code {
        resp.extensions_mut().insert(ErrorCode(code));
    }
    harden(resp)
}

/// A page that says why nothing can be done: a heading and one paragraph (`#message`).
pub fn message(status: StatusCode, code: &'static str, heading: &str, text: &str) -> Response {
    let body = format!(
        "<h1 id=\"heading\">{}</h1>\n<p id=\"message\" data-code=\"{}\">{}</p>",
        esc(heading),
        esc(code),
        esc(text)
    );
    html(status, Some(code), heading, &body)
}

/// A 303 to `location`, with the strict headers and any cookies to set.
pub fn see_other(location: &str, cookies: &[String]) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    harden(resp)
}

/// The facts of a view, as the other doors show them.
fn facts(view: &ApprovalView) -> Vec<(&'static str, &'static str, String)> {
    let mut f = vec![("Requester", "requester", view.requester.clone())];
    if let Some(by) = &view.filed_by {
        f.push(("Filed by", "filed_by", by.clone()));
    }
    f.push(("Access", "access", view.access.clone()));
    f.push(("Duration", "duration", view.duration.clone()));
    if let Some(j) = &view.justification {
        f.push(("Reason", "justification", j.clone()));
    }
    let stage = if view.stage_name.is_empty() {
        format!("{} of {}", view.stage + 1, view.stages.max(1))
    } else {
        format!("{} of {}: {}", view.stage + 1, view.stages.max(1), view.stage_name)
    };
    f.push(("Stage", "stage", stage));
    if !view.rule.is_empty() {
        f.push(("Policy rule", "rule", view.rule.clone()));
    }
    f
}

/// The request as the approver sees it: facts, checks and status.
fn request_section(view: &ApprovalView) -> String {
    let mut out = format!("<h1 id=\"title\">{}</h1>\n", esc(&view.title()));
    out.push_str("<dl id=\"facts\">");
    for (label, key, value) in facts(view) {
        out.push_str(&format!("<dt>{}</dt><dd data-fact=\"{key}\">{}</dd>", esc(label), esc(&value)));
    }
    out.push_str("</dl>\n");
    if !view.checks.is_empty() {
        out.push_str("<h2>Policy checks</h2>\n<ul class=\"checks\" id=\"checks\">");
        for (ok, why) in &view.checks {
            out.push_str(&format!("<li class=\"{}\">{}</li>", if *ok { "pass" } else { "fail" }, esc(why)));
        }
        out.push_str("</ul>\n");
    }
    let state = match &view.status {
        ViewStatus::Pending { .. } => "pending",
        ViewStatus::Decided { approve: true, .. } => "approved",
        ViewStatus::Decided { approve: false, .. } => "rejected",
        ViewStatus::Closed { .. } => "closed",
    };
    out.push_str(&format!(
        "<p class=\"status\" id=\"status\" data-status=\"{state}\">{}</p>\n",
        esc(&view.status.summary())
    ));
    out
}

/// Who is signed in.
fn signed_in(name: Option<&str>, upn: Option<&str>, oid: &str) -> String {
    let who = match (name, upn) {
        (Some(n), Some(u)) => format!("{n} ({u})"),
        (None, Some(u)) => u.to_owned(),
        (Some(n), None) => format!("{n} ({oid})"),
        (None, None) => oid.to_owned(),
    };
    format!("<p class=\"who\" id=\"who\">Signed in as {}</p>\n", esc(&who))
}

/// The signed-in person, for the pages.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub oid: &'a str,
    pub upn: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// The approval page: the request, and while the stage is pending, the decision form.
pub fn approval(view: &ApprovalView, who: Viewer<'_>, action: &str, csrf: &str) -> Response {
    let mut body = request_section(view);
    body.insert_str(0, &signed_in(who.name, who.upn, who.oid));
    if view.status.is_pending() {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{}\" id=\"decide\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label for=\"comment\">Comment</label>\
             <textarea id=\"comment\" name=\"comment\" rows=\"4\" maxlength=\"{}\"></textarea>\
             <div class=\"buttons\">\
             <button id=\"approve\" class=\"approve\" type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
             <button id=\"reject\" class=\"reject\" type=\"submit\" name=\"decision\" value=\"reject\">Reject</button>\
             </div></form>\n",
            esc(action),
            esc(csrf),
            super::MAX_COMMENT_CHARS
        ));
    }
    html(StatusCode::OK, None, &view.title(), &body)
}

/// The page after a counted decision.
pub fn recorded(view: &ApprovalView, who: Viewer<'_>, approve: bool) -> Response {
    let heading = if approve { "Approved, thank you" } else { "Rejected, thank you" };
    let body = format!(
        "<h1 id=\"result\" data-decision=\"{}\">{heading}</h1>\n{}{}",
        if approve { "approve" } else { "reject" },
        signed_in(who.name, who.upn, who.oid),
        request_section(view).replacen("<h1 id=\"title\">", "<h2 id=\"title\">", 1).replacen("</h1>", "</h2>", 1)
    );
    html(StatusCode::OK, None, heading, &body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xfe]), "+//+");
    }

    #[test]
    fn the_policy_allows_exactly_the_stylesheet() {
        let doc = document("t", "<p>x</p>");
        let style = doc.split("<style>").nth(1).unwrap().split("</style>").next().unwrap();
        let hash = base64(&Sha256::digest(style.as_bytes()));
        assert!(CSP.contains(&format!("style-src 'sha256-{hash}'")), "{}", *CSP);
        assert!(CSP.starts_with("default-src 'none';"));
        assert!(CSP.contains("form-action 'self'") && CSP.contains("frame-ancestors 'none'"));
        assert!(!doc.contains("<script"));
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(esc("<b a=\"1\">&'"), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
        let r = message(StatusCode::GONE, "link.used", "Used <x>", "a \"b\"");
        assert_eq!(r.status(), StatusCode::GONE);
        for h in ["content-security-policy", "x-frame-options", "referrer-policy", "cache-control"] {
            assert!(r.headers().contains_key(h), "{h}");
        }
        assert_eq!(r.extensions().get::<ErrorCode>().map(|c| c.0), Some("link.used"));
    }
}
