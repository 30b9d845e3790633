//! The HTML of the status page. No script; the one stylesheet is inline and allowed by its
//! hash; every value from Redis is escaped.

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use grantline_queue::{DeadLetter, QueueMetrics};
use grantline_shared::audit::AuditRecord;
use grantline_shared::record::RequestRecord;
use sha2::{Digest, Sha256};

use crate::error::ErrorCode;
use crate::web::page::{base64, esc, harden_with};

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1b1f24;font-size:14px}\
header{background:#24292f;color:#fff;padding:.6rem 1.5rem;display:flex;align-items:center;gap:1rem}\
header h1{font-size:1.1rem;margin:0;flex:1}header a{color:#fff}header form{margin:0}\
main{max-width:78rem;margin:1.25rem auto;padding:0 1.5rem}\
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.15);padding:1rem 1.25rem;margin-bottom:1.25rem}\
h2{font-size:1rem;margin:0 0 .75rem}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #d0d7de;vertical-align:top}\
th{color:#57606a;font-weight:600;background:#f6f8fa}#timeline td:first-child,#dead-letters td:first-child{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.state{display:inline-block;padding:.05rem .45rem;border-radius:1rem;background:#ddf4ff;color:#0550ae;font-weight:600;font-size:.85em}\
.state.bad{background:#ffebe9;color:#cf222e}.state.good{background:#dafbe1;color:#1a7f37}.state.wait{background:#fff8c5;color:#7d4e00}\
.dead{color:#cf222e;font-weight:600}\
form.filters{display:flex;gap:.75rem;align-items:end;margin-bottom:.75rem}label{display:flex;flex-direction:column;font-weight:600;color:#57606a;gap:.2rem}\
input,select{font:inherit;padding:.3rem .45rem;border:1px solid #8c959f;border-radius:6px}\
button{font:inherit;font-weight:600;padding:.35rem 1rem;border-radius:6px;border:1px solid #1f883d;background:#1f883d;color:#fff;cursor:pointer}\
header button{background:transparent;border-color:#fff}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}dt{font-weight:600;color:#57606a}dd{margin:0}\
pre{background:#f6f8fa;padding:.6rem;border-radius:6px;overflow-x:auto;font-size:12px;margin:0}\
.muted{color:#57606a}.error{color:#cf222e}.ok{color:#1a7f37}\
main.narrow{max-width:26rem}\
";

static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64(&Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
});

fn document(title: &str, header_html: &str, body: &str, narrow: bool) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body>{header_html}<main{}>\n{body}\n</main></body></html>\n",
        esc(title),
        if narrow { " class=\"narrow\"" } else { "" }
    )
}

fn respond(status: StatusCode, code: Option<&'static str>, html: String) -> Response {
    let mut resp =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], html).into_response();
    if let Some(code) = code {
        resp.extensions_mut().insert(ErrorCode(code));
    }
    harden_with(resp, &CSP)
}

/// The bar on every signed-in page: where you are, who you are, sign out.
fn bar(operator: &str, csrf: Option<&str>) -> String {
    let sign_out = match csrf {
        Some(c) => format!(
            "<form method=\"post\" action=\"/status/sign-out\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" id=\"sign-out\">Sign out</button></form>",
            esc(c)
        ),
        None => String::new(),
    };
    format!(
        "<header><h1><a href=\"/status\">grantline status</a></h1><span id=\"operator\">operator: {}</span>{sign_out}</header>",
        esc(operator)
    )
}

/// A page that says why nothing can be shown.
pub fn message(status: StatusCode, code: &'static str, heading: &str, text: &str) -> Response {
    let body = format!(
        "<section><h2 id=\"heading\">{}</h2><p id=\"message\" data-code=\"{}\">{}</p></section>",
        esc(heading),
        esc(code),
        esc(text)
    );
    respond(status, Some(code), document(heading, "", &body, true))
}

/// The sign-in form.
pub fn sign_in(status: StatusCode, note: Option<&str>) -> Response {
    let note = note.map(|n| format!("<p class=\"error\" id=\"sign-in-error\">{}</p>", esc(n))).unwrap_or_default();
    let body = format!(
        "<section><h2>Sign in to grantline status</h2>{note}\
         <form method=\"post\" action=\"/status/sign-in\" id=\"sign-in\">\
         <label>Operator token<input type=\"password\" name=\"token\" autocomplete=\"off\" required></label>\
         <p><button type=\"submit\">Sign in</button></p></form>\
         <p class=\"muted\">The page is read-only. Operator tokens are configured in <code>ingest.operator_tokens</code>.</p></section>"
    );
    let code = if status == StatusCode::UNAUTHORIZED { Some(crate::codes::AUTH_BAD_TOKEN) } else { None };
    respond(status, code, document("Sign in - grantline", "", &body, true))
}

/// A 303 with cookies.
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
    harden_with(resp, &CSP)
}

fn state_class(state: &str) -> &'static str {
    match state {
        "denied" | "rejected" | "failed" | "expired" | "compensating" | "rolled_back" => "state bad",
        "active" | "completed" | "removed" | "granted" | "ticket_updated" => "state good",
        "awaiting_approval" | "deferred" | "received" | "validating" => "state wait",
        _ => "state",
    }
}

fn time(ms: u64) -> String {
    match jiff::Timestamp::from_millisecond(ms as i64) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => ms.to_string(),
    }
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// What the overview shows.
pub struct Overview<'a> {
    pub operator: &'a str,
    pub csrf: Option<&'a str>,
    pub queues: &'a [(QueueMetrics, Vec<DeadLetter>)],
    pub state: &'a str,
    pub ticket: &'a str,
    pub requests: &'a [RequestRecord],
    pub next: Option<&'a str>,
    pub now_ms: u64,
}

pub fn overview(o: &Overview<'_>) -> Response {
    let mut body = String::new();
    // queues
    body.push_str("<section id=\"queues\"><h2>Queues</h2><table><thead><tr><th>queue</th><th>ready</th><th>oldest ready</th>\
                   <th>running</th><th>delayed</th><th>dead</th><th>completed</th><th>retried</th><th>waited</th><th>conflicts</th></tr></thead><tbody>");
    for (m, _) in o.queues {
        body.push_str(&format!(
            "<tr data-queue=\"{q}\"><td>{q}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            m.ready,
            if m.ready > 0 { age(m.oldest_ready_age_ms) } else { "-".into() },
            m.in_flight,
            m.delayed,
            if m.dead > 0 { " dead" } else { "" },
            m.dead,
            m.completed_total,
            m.retried_total,
            m.waited_total,
            m.conflicted_total,
            q = esc(&m.queue),
        ));
    }
    body.push_str("</tbody></table></section>\n");
    // dead letters
    let letters: Vec<&DeadLetter> = o.queues.iter().flat_map(|(_, d)| d.iter()).collect();
    body.push_str("<section id=\"dead-letters\"><h2>Dead letters</h2>");
    if letters.is_empty() {
        body.push_str("<p class=\"ok\">None.</p>");
    } else {
        body.push_str("<table><thead><tr><th>when</th><th>queue</th><th>request</th><th>attempts</th><th>last error</th><th>next action</th></tr></thead><tbody>");
        for d in letters {
            let request = d.payload.get("request_id").and_then(|v| v.as_str()).unwrap_or("");
            let request_cell = if request.is_empty() {
                "-".to_owned()
            } else {
                format!("<a href=\"/status/requests/{r}\">{r}</a>", r = esc(request))
            };
            let err =
                d.errors.last().map(|e| format!("{} ({})", e.message, e.code)).unwrap_or_else(|| d.reason.clone());
            body.push_str(&format!(
                "<tr class=\"dead-letter\" data-id=\"{id}\"><td>{}</td><td>{q}</td><td>{request_cell}</td><td class=\"num\">{}</td>\
                 <td>{}</td><td><code>grantline dlq retry {q} {id}</code></td></tr>",
                time(d.at),
                d.attempts,
                esc(&err),
                id = esc(&d.id),
                q = esc(&d.queue),
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>\n");
    // requests
    body.push_str(
        "<section id=\"requests\"><h2>Requests</h2><form class=\"filters\" method=\"get\" action=\"/status\">\
                   <label>State<select name=\"state\"><option value=\"\">any</option>",
    );
    for s in grantline_shared::request::RequestState::ALL {
        let name = s.as_str();
        body.push_str(&format!(
            "<option value=\"{name}\"{}>{}</option>",
            if name == o.state { " selected" } else { "" },
            name.replace('_', " ")
        ));
    }
    body.push_str(&format!(
        "</select></label><label>Ticket<input type=\"text\" name=\"ticket\" value=\"{}\" placeholder=\"RITM0010001\"></label>\
         <button type=\"submit\">Filter</button></form>",
        esc(o.ticket)
    ));
    if o.requests.is_empty() {
        body.push_str("<p class=\"muted\" id=\"no-requests\">No request matches.</p>");
    } else {
        body.push_str("<table><thead><tr><th>ticket</th><th>state</th><th>for</th><th>access</th><th>updated</th><th>ends</th><th>request</th></tr></thead><tbody>");
        for r in o.requests {
            let who = r.requester.as_ref().map(|u| u.upn.clone()).unwrap_or_else(|| "-".into());
            let what = r.target.clone().unwrap_or_else(|| "-".into());
            let ends = r.end_ms.map(time).unwrap_or_else(|| "-".into());
            body.push_str(&format!(
                "<tr class=\"request\" data-ticket=\"{t}\" data-state=\"{s}\"><td>{t}</td><td><span class=\"{c}\">{}</span></td>\
                 <td>{}</td><td>{}</td><td>{} ago</td><td>{ends}</td><td><a href=\"/status/requests/{id}\">{short}</a></td></tr>",
                s_label(r.state.as_str()),
                esc(&who),
                esc(&what),
                age(o.now_ms.saturating_sub(r.updated_ms)),
                t = esc(&r.ticket.number),
                s = r.state.as_str(),
                c = state_class(r.state.as_str()),
                id = esc(&r.id),
                short = esc(r.id.get(..8).unwrap_or(&r.id)),
            ));
        }
        body.push_str("</tbody></table>");
    }
    if let Some(next) = o.next {
        let mut q = format!("after={}", urlencode(next));
        if !o.state.is_empty() {
            q.push_str(&format!("&state={}", urlencode(o.state)));
        }
        if !o.ticket.is_empty() {
            q.push_str(&format!("&ticket={}", urlencode(o.ticket)));
        }
        body.push_str(&format!("<p><a id=\"next-page\" href=\"/status?{}\">Next page</a></p>", esc(&q)));
    }
    body.push_str("</section>");
    respond(StatusCode::OK, None, document("grantline status", &bar(o.operator, o.csrf), &body, false))
}

fn s_label(s: &str) -> String {
    s.replace('_', " ")
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What the request page shows.
pub struct RequestPage<'a> {
    pub operator: &'a str,
    pub csrf: Option<&'a str>,
    pub rec: &'a RequestRecord,
    pub events: &'a [AuditRecord],
    pub chain_intact: bool,
    pub trace_url: Option<&'a str>,
}

pub fn request(p: &RequestPage<'_>) -> Response {
    let r = p.rec;
    let mut body = String::new();
    let trace = match p.trace_url {
        Some(u) => format!("<a id=\"trace\" href=\"{}\">{}</a>", esc(u), esc(&r.trace_id)),
        None => format!("<code id=\"trace\">{}</code>", esc(&r.trace_id)),
    };
    let mut facts = vec![
        (
            "Ticket",
            format!(
                "<span id=\"ticket\">{}</span> <span class=\"muted\">({} {})</span>",
                esc(&r.ticket.number),
                esc(&r.ticket.system),
                esc(&r.ticket.table)
            ),
        ),
        (
            "State",
            format!(
                "<span id=\"state\" class=\"{}\">{}</span>",
                state_class(r.state.as_str()),
                s_label(r.state.as_str())
            ),
        ),
    ];
    if let Some(reason) = &r.reason {
        facts.push(("Why", format!("<span id=\"reason\">{}</span>", esc(reason))));
    }
    if let Some(u) = &r.requester {
        facts.push(("For", esc(&format!("{} ({})", u.upn, u.id))));
    }
    if let Some(by) = &r.opened_by {
        facts.push((
            "Filed by",
            esc(&serde_json::to_value(by)
                .map(|v| v.get("upn").and_then(|x| x.as_str()).unwrap_or_default().to_owned())
                .unwrap_or_default()),
        ));
    }
    if let Some(t) = &r.target {
        facts.push(("Access", esc(t)));
    }
    if let Some(j) = &r.justification {
        facts.push(("Justification", esc(j)));
    }
    facts.push(("Created", time(r.created_ms)));
    facts.push(("Updated", time(r.updated_ms)));
    if let Some(e) = r.end_ms {
        facts.push(("Ends", time(e)));
    }
    if let Some(c) = r.compacted_ms {
        facts.push(("Compacted", format!("{} (retention; the timeline holds every fact)", time(c))));
    }
    facts.push(("Trace", trace));
    facts.push((
        "Audit chain",
        if p.chain_intact {
            "<span class=\"ok\" id=\"chain\">intact</span>".into()
        } else {
            "<span class=\"error\" id=\"chain\">BROKEN: run grantline audit verify</span>".into()
        },
    ));
    body.push_str(&format!("<section id=\"facts\"><h2>Request {}</h2><dl>", esc(&r.id)));
    for (k, v) in facts {
        body.push_str(&format!("<dt>{k}</dt><dd>{v}</dd>"));
    }
    body.push_str("</dl></section>\n");
    // approvals
    body.push_str("<section id=\"approvals\"><h2>Approvals</h2>");
    if r.approvals.is_empty() {
        body.push_str("<p class=\"muted\">No decision recorded.</p>");
    } else {
        body.push_str("<table><thead><tr><th>when</th><th>stage</th><th>approver</th><th>directory id</th><th>decision</th><th>via</th><th>recorded by</th><th>comment</th></tr></thead><tbody>");
        for a in &r.approvals {
            body.push_str(&format!(
                "<tr class=\"approval\"><td>{}</td><td class=\"num\">{}</td><td>{}</td><td><code>{}</code></td><td><span class=\"{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(a.at_ms),
                a.stage.map(|s| (s + 1).to_string()).unwrap_or_else(|| "-".into()),
                esc(a.approver_upn.as_deref().unwrap_or(&a.approver)),
                esc(a.approver_id.as_deref().unwrap_or("-")),
                if a.approve { "state good" } else { "state bad" },
                if a.approve { "approved" } else { "rejected" },
                esc(a.via.as_deref().unwrap_or("-")),
                esc(a.recorded_by.as_deref().unwrap_or("-")),
                esc(&a.comment),
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>\n");
    // receipts
    body.push_str("<section id=\"receipts\"><h2>What changed</h2>");
    let mut any = false;
    for (label, value) in [
        ("Read before", r.current.as_ref().and_then(|c| serde_json::to_string_pretty(c).ok())),
        ("Grant receipt", r.grant.as_ref().and_then(|g| serde_json::to_string_pretty(g).ok())),
        ("Removal receipt", r.removal.as_ref().and_then(|g| serde_json::to_string_pretty(g).ok())),
    ] {
        if let Some(v) = value {
            any = true;
            body.push_str(&format!("<h3>{label}</h3><pre>{}</pre>", esc(&v)));
        }
    }
    if !any {
        body.push_str("<p class=\"muted\">Nothing changed upstream.</p>");
    }
    body.push_str("</section>\n");
    // ticket updates
    body.push_str("<section id=\"ticket-updates\"><h2>Ticket updates</h2>");
    let notes: Vec<&AuditRecord> = p.events.iter().filter(|e| e.event.name() == "ticket_updated").collect();
    if notes.is_empty() {
        body.push_str("<p class=\"muted\">None yet.</p>");
    } else {
        body.push_str("<ul>");
        for n in notes {
            body.push_str(&format!("<li>{} {}</li>", time(n.at_ms), esc(&details(n))));
        }
        body.push_str("</ul>");
    }
    body.push_str("</section>\n");
    // timeline
    body.push_str("<section id=\"timeline\"><h2>Timeline</h2><table><thead><tr><th>when</th><th>event</th><th>by</th><th>details</th></tr></thead><tbody>");
    for e in p.events {
        body.push_str(&format!(
            "<tr class=\"event\" data-event=\"{n}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(e.at_ms),
            e.event.name().replace('_', " "),
            esc(&e.actor),
            esc(&details(e)),
            n = e.event.name(),
        ));
    }
    body.push_str("</tbody></table></section>");
    respond(
        StatusCode::OK,
        None,
        document(&format!("{} - grantline status", r.ticket.number), &bar(p.operator, p.csrf), &body, false),
    )
}

/// The event's fields as `key=value`, long values clipped.
fn details(r: &AuditRecord) -> String {
    let v = serde_json::to_value(&r.event).unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if k == "type" {
                continue;
            }
            let s = match val {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            if !s.is_empty() {
                let clipped: String = s.chars().take(200).collect();
                parts.push(format!("{k}={clipped}"));
            }
        }
    }
    parts.join("  ")
}
