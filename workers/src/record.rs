//! Reading the request record and writing a step's outcome as one hand-off: record fields,
//! hash-chained audit events and the next jobs, guarded by the state the step started from
//! and the audit head it read, so a concurrent change makes the step run again on fresh
//! state instead of overwriting it.

use std::collections::HashMap;

use grantline_queue::{Guard, Handoff, JobError, NewJob, Queue, RunAt, Write};
use grantline_shared::audit::{self, AuditEvent, AuditRecord};
use grantline_shared::flow::{self, Next, Outcome};
use grantline_shared::jobs::{
    ExecuteGrant, JobPayload, RemovalTrigger, RemoveAccess, RequestApproval, RollbackGrant, ScheduleRemoval,
    UpdateTicket, Validate,
};
use grantline_shared::request::{RequestState, TicketRef, fields, keys};
use grantline_shared::trace::TRACEPARENT;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// What a grant changed, and what its removal may undo: only what grantline added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantReceipt {
    pub group_id: String,
    pub group_name: String,
    pub user_id: String,
    pub user_upn: String,
    /// The membership existed before this request: never removed by it.
    pub pre_existing: bool,
    pub granted_ms: u64,
    pub graph_request_id: Option<String>,
    pub client_request_id: String,
}

/// The request record as a handler sees it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub id: String,
    pub state: RequestState,
    pub ticket: TicketRef,
    pub traceparent: String,
    pub trace_id: String,
    pub audit_head: String,
    pub raw: HashMap<String, String>,
}

impl RequestRecord {
    pub fn field<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.raw.get(name).and_then(|v| serde_json::from_str(v).ok())
    }
}

pub async fn load(queue: &Queue, id: &str) -> Result<RequestRecord, JobError> {
    let mut conn = queue.connection();
    let raw: HashMap<String, String> =
        conn.hgetall(queue.namespace().key(&keys::request(id))).await.map_err(crate::steps::redis_unavailable)?;
    if raw.is_empty() {
        return Err(JobError::permanent("request.not_found", format!("request {id} has no record")));
    }
    let state = raw
        .get(fields::STATE)
        .and_then(|s| RequestState::parse(s))
        .ok_or_else(|| JobError::permanent("request.corrupt", format!("request {id} has no valid state")))?;
    let ticket: TicketRef = raw
        .get(fields::TICKET)
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| JobError::permanent("request.corrupt", format!("request {id} has no ticket")))?;
    Ok(RequestRecord {
        id: id.to_owned(),
        state,
        ticket,
        traceparent: raw.get(fields::TRACEPARENT).cloned().unwrap_or_default(),
        trace_id: raw.get(fields::TRACE_ID).cloned().unwrap_or_default(),
        audit_head: raw.get(fields::AUDIT_HEAD).cloned().unwrap_or_else(|| audit::GENESIS.to_owned()),
        raw,
    })
}

/// One step's outcome, written atomically with the acknowledgement of its job.
pub struct StepCommit<'a> {
    rec: &'a RequestRecord,
    actor: String,
    now_ms: u64,
    outcome: Option<Outcome>,
    events: Vec<AuditEvent>,
    fields: Vec<(String, String)>,
    writes: Vec<Write>,
    jobs: Vec<NewJob>,
    expect: Vec<RequestState>,
    window_at_ms: Option<u64>,
    expiry_ms: Option<u64>,
}

impl<'a> StepCommit<'a> {
    pub fn new(rec: &'a RequestRecord, step: &str, now_ms: u64) -> Self {
        Self {
            rec,
            actor: format!("grantline:{step}"),
            now_ms,
            outcome: None,
            events: Vec::new(),
            fields: Vec::new(),
            writes: Vec::new(),
            jobs: Vec::new(),
            expect: vec![rec.state],
            window_at_ms: None,
            expiry_ms: None,
        }
    }
    pub fn outcome(mut self, o: Outcome) -> Self {
        self.outcome = Some(o);
        self
    }
    pub fn event(mut self, e: AuditEvent) -> Self {
        self.events.push(e);
        self
    }
    pub fn events(mut self, e: impl IntoIterator<Item = AuditEvent>) -> Self {
        self.events.extend(e);
        self
    }
    pub fn set(mut self, field: &str, value: impl Into<String>) -> Self {
        self.fields.push((field.to_owned(), value.into()));
        self
    }
    pub fn set_json<T: Serialize>(self, field: &str, value: &T) -> Result<Self, JobError> {
        let v = serde_json::to_string(value).map_err(|e| JobError::permanent("encode", e.to_string()))?;
        Ok(self.set(field, v))
    }
    pub fn write(mut self, w: Write) -> Self {
        self.writes.push(w);
        self
    }
    /// When the outcome defers execution: the window's opening.
    pub fn window_at(mut self, ms: u64) -> Self {
        self.window_at_ms = Some(ms);
        self
    }
    /// When the outcome schedules removal: the grant's end.
    pub fn expiry_at(mut self, ms: u64) -> Self {
        self.expiry_ms = Some(ms);
        self
    }

    fn job<T: JobPayload>(&self, payload: &T, run_at: RunAt) -> Result<NewJob, JobError> {
        let job = NewJob::new(T::KIND.as_str(), payload).map_err(|e| JobError::permanent("encode", e.to_string()))?;
        Ok(job.run_at(run_at).meta(TRACEPARENT, self.rec.traceparent.clone()))
    }

    pub fn into_handoff(mut self) -> Result<Handoff, JobError> {
        let id = self.rec.id.clone();
        if let Some(o) = self.outcome {
            let t = flow::next(o);
            if let Some(s) = t.state {
                self.fields.push((fields::STATE.into(), s.as_str().into()));
            }
            for n in t.next {
                let r = id.clone();
                let job = match n {
                    Next::Validate => self.job(&Validate { request_id: r }, RunAt::Now)?,
                    Next::RequestApproval => self.job(&RequestApproval { request_id: r }, RunAt::Now)?,
                    Next::ExecuteGrant => self.job(&ExecuteGrant { request_id: r }, RunAt::Now)?,
                    Next::ExecuteGrantAtWindow => {
                        self.job(&ExecuteGrant { request_id: r }, RunAt::At(self.window_at_ms.unwrap_or(self.now_ms)))?
                    }
                    Next::UpdateTicket(update) => self.job(&UpdateTicket { request_id: r, update }, RunAt::Now)?,
                    Next::ScheduleRemoval => self.job(&ScheduleRemoval { request_id: r }, RunAt::Now)?,
                    Next::RemoveAccessAtExpiry => self.job(
                        &RemoveAccess { request_id: r, trigger: RemovalTrigger::Expiry },
                        RunAt::At(self.expiry_ms.unwrap_or(self.now_ms)),
                    )?,
                    Next::RollbackGrant => self.job(&RollbackGrant { request_id: r }, RunAt::Now)?,
                };
                self.jobs.push(job);
            }
        }
        self.fields.push((fields::UPDATED_MS.into(), self.now_ms.to_string()));
        let mut h = Handoff::done()
            .guard(Guard::FieldIn {
                key: keys::request(&id),
                field: fields::STATE.into(),
                values: self.expect.iter().map(|s| s.as_str().to_owned()).collect(),
            })
            .guard(Guard::FieldEquals {
                key: keys::request(&id),
                field: fields::AUDIT_HEAD.into(),
                value: self.rec.audit_head.clone(),
            });
        let mut head = self.rec.audit_head.clone();
        for event in self.events {
            let record = AuditRecord {
                request_id: id.clone(),
                at_ms: self.now_ms,
                actor: self.actor.clone(),
                trace_id: self.rec.trace_id.clone(),
                event,
            };
            tracing::info!(request_id = %id, event = record.event.name(), actor = %record.actor, "audit");
            let (entry, next_head) =
                audit::entry(&head, &record).map_err(|e| JobError::permanent("encode", e.to_string()))?;
            h = h.write(Write::xadd(keys::audit(&id), entry));
            head = next_head;
        }
        self.fields.push((fields::AUDIT_HEAD.into(), head));
        h = h.write(Write::hset(keys::request(&id), self.fields));
        for w in self.writes {
            h = h.write(w);
        }
        for j in self.jobs {
            h = h.then(j);
        }
        Ok(h)
    }
}
