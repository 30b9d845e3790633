//! grantline-store: the one place that reads and writes the request record.
//!
//! - [`load`] reads the typed [`RequestRecord`] (a field that does not parse is an error naming
//!   it); [`load_for`] also says whether a step of a given kind may run on it now
//!   (`shared::flow::entry_states`).
//! - [`Commit`] is every change to a request: the outcome (whose state and next jobs come from
//!   `shared::flow::next`), typed field updates, hash-chained audit events and extra writes, all
//!   applied by one queue script, guarded by the state and audit head the change was based on. A
//!   worker returns it as its job's hand-off ([`Commit::into_handoff`]); the HTTP edge and the
//!   scheduler apply it on its own ([`Commit::apply`]).
//! - [`job`] is the one mapping from a [`Next`] to the queue job that runs it.
//!
//! It knows the queue (for the atomic commit) and the vocabulary; it calls nothing outside Redis.

use std::collections::HashMap;
use std::time::Duration;

use grantline_queue::{CommitOutcome, Guard, Handoff, NewJob, Queue, QueueError, RunAt, Write, WriteCmd, successor_id};
use grantline_shared::JobKind;
use grantline_shared::audit::{self, AuditEvent, AuditRecord, GENESIS};
use grantline_shared::flow::{self, Next, Outcome};
use grantline_shared::jobs::{
    ApprovalDeadline, ExecuteGrant, JobPayload, Notify, RemoveAccess, RequestApproval, RollbackGrant, ScheduleRemoval,
    SyncApprovals, UpdateTicket, Validate,
};
use grantline_shared::record::{RecordError, RequestRecord, Update, fields};
use grantline_shared::request::{RequestState, TicketRef, keys};
use grantline_shared::trace::TRACEPARENT;
use redis::AsyncCommands;

pub use grantline_shared::record;

pub mod decision;
pub mod directory;
pub mod doors;
pub mod index;
pub mod lifecycle;
pub mod person;
pub mod retention;
pub mod trail;
pub mod view;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("encoding: {0}")]
    Encode(String),
}

impl StoreError {
    /// True when retrying later can help (Redis unreachable), false for a record that cannot
    /// be read or a change that cannot be encoded.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Redis(_) | StoreError::Queue(QueueError::Redis(_)))
    }
}

/// Reads a request record.
pub async fn load(queue: &Queue, id: &str) -> Result<RequestRecord, StoreError> {
    let mut conn = queue.connection();
    let raw: HashMap<String, String> = conn.hgetall(queue.namespace().key(&keys::request(id))).await?;
    Ok(RequestRecord::from_hash(id, &raw)?)
}

/// Reads a request record, or `None` when there is none.
pub async fn find(queue: &Queue, id: &str) -> Result<Option<RequestRecord>, StoreError> {
    match load(queue, id).await {
        Ok(r) => Ok(Some(r)),
        Err(StoreError::Record(RecordError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a step finds when it starts.
#[derive(Debug)]
pub enum Loaded {
    /// The request is in a state the step starts from.
    Run(RequestRecord),
    /// The step ran already (or can no longer run): acknowledge and do nothing.
    Skip(RequestRecord),
}

/// Reads a request record for a step of `kind`.
pub async fn load_for(queue: &Queue, kind: JobKind, id: &str) -> Result<Loaded, StoreError> {
    let rec = load(queue, id).await?;
    Ok(if flow::may_run(kind, rec.state) { Loaded::Run(rec) } else { Loaded::Skip(rec) })
}

/// The request id a ticket number maps to.
pub async fn by_ticket(queue: &Queue, system: &str, number: &str) -> Result<Option<String>, StoreError> {
    let mut conn = queue.connection();
    Ok(conn.get(queue.namespace().key(&keys::ticket(system, number))).await?)
}

/// The queue job that runs `next` for a request: the one place a [`Next`] becomes a job. Its
/// delay is relative to `now_ms` (the caller's clock), so the queue times it on its own clock.
pub fn job(request_id: &str, traceparent: &str, next: Next, now_ms: u64) -> Result<NewJob, StoreError> {
    let r = request_id.to_owned();
    let encode = |e: QueueError| StoreError::Encode(e.to_string());
    let job = match next {
        Next::Validate => NewJob::new(Validate::KIND.as_str(), &Validate { request_id: r }),
        Next::RequestApproval => NewJob::new(RequestApproval::KIND.as_str(), &RequestApproval { request_id: r }),
        Next::ExecuteGrant { .. } => NewJob::new(ExecuteGrant::KIND.as_str(), &ExecuteGrant { request_id: r }),
        Next::UpdateTicket(update) => NewJob::new(UpdateTicket::KIND.as_str(), &UpdateTicket { request_id: r, update }),
        Next::ScheduleRemoval => NewJob::new(ScheduleRemoval::KIND.as_str(), &ScheduleRemoval { request_id: r }),
        Next::RemoveAccess { trigger, .. } => {
            NewJob::new(RemoveAccess::KIND.as_str(), &RemoveAccess { request_id: r, trigger })
        }
        Next::RollbackGrant => NewJob::new(RollbackGrant::KIND.as_str(), &RollbackGrant { request_id: r }),
        Next::Notify(what) => NewJob::new(Notify::KIND.as_str(), &Notify { request_id: r, what }),
        Next::SyncApprovals => NewJob::new(SyncApprovals::KIND.as_str(), &SyncApprovals { request_id: r }),
        Next::ApprovalDeadline { due_ms } => {
            NewJob::new(ApprovalDeadline::KIND.as_str(), &ApprovalDeadline { request_id: r, due_ms })
        }
    }
    .map_err(encode)?;
    let job = match next.due_ms() {
        Some(at) if at > now_ms => job.run_at(RunAt::After(Duration::from_millis(at - now_ms))),
        _ => job,
    };
    Ok(if traceparent.is_empty() { job } else { job.meta(TRACEPARENT, traceparent) })
}

/// The result of applying a [`Commit`] on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Written, with the ids of the jobs it enqueued and the new state.
    Done { jobs: Vec<String>, state: RequestState },
    /// The record changed since it was read (state or audit head): nothing was written; read
    /// it again and decide again.
    Conflict,
}

/// Every change to a request, written in one atomic step.
#[derive(Debug)]
pub struct Commit<'a> {
    rec: &'a RequestRecord,
    actor: String,
    now_ms: u64,
    outcome: Option<Outcome>,
    events: Vec<AuditEvent>,
    update: Update,
    writes: Vec<Write>,
    guards: Vec<Guard>,
    extra: Vec<Next>,
    /// The states the record may be in for the commit to apply (default: the state read).
    expect: Vec<RequestState>,
}

impl<'a> Commit<'a> {
    /// A change to `rec` by `actor` (`grantline:<step>`, `operator:<id>`, `approver:<id>`,
    /// `scheduler`), at `now_ms` on the caller's clock.
    pub fn new(rec: &'a RequestRecord, actor: impl Into<String>, now_ms: u64) -> Self {
        Self {
            rec,
            actor: actor.into(),
            now_ms,
            outcome: None,
            events: Vec::new(),
            update: Update::default(),
            writes: Vec::new(),
            guards: Vec::new(),
            extra: Vec::new(),
            expect: vec![rec.state],
        }
    }

    /// A step's change: actor `grantline:<kind>`.
    pub fn step(rec: &'a RequestRecord, kind: JobKind, now_ms: u64) -> Self {
        Self::new(rec, format!("grantline:{kind}"), now_ms)
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

    /// Typed field changes: `commit.set(|u| u.reason(&why).end_ms(&end))`.
    pub fn set(mut self, f: impl FnOnce(Update) -> Update) -> Self {
        self.update = f(std::mem::take(&mut self.update));
        self
    }

    /// An extra write in the namespace (indexes, locks, the effect ledger).
    pub fn write(mut self, w: Write) -> Self {
        self.writes.push(w);
        self
    }

    /// An extra guard (for example: this request still holds a lock).
    pub fn guard(mut self, g: Guard) -> Self {
        self.guards.push(g);
        self
    }

    /// A job beyond those the outcome calls for (an operator's revocation, a removal the
    /// offboarding sweep asks for).
    pub fn then(mut self, n: Next) -> Self {
        self.extra.push(n);
        self
    }

    /// The record may also be in these states (the commit is still based on what was read).
    pub fn also_from(mut self, states: &[RequestState]) -> Self {
        for s in states {
            if !self.expect.contains(s) {
                self.expect.push(*s);
            }
        }
        self
    }

    /// The id of the request it changes.
    pub fn request_id(&self) -> &str {
        &self.rec.id
    }

    /// The state the record will have once applied.
    pub fn new_state(&self) -> RequestState {
        self.outcome.and_then(|o| flow::next(o).state).unwrap_or(self.rec.state)
    }

    fn build(self, plain: bool) -> Result<(Handoff, RequestState), StoreError> {
        let rec = self.rec;
        let id = rec.id.clone();
        let new_state = self.new_state();
        let mut nexts: Vec<Next> = self.outcome.map(|o| flow::next(o).next).unwrap_or_default();
        nexts.extend(self.extra);
        let person = person::index_writes(rec, new_state, &self.update);
        let mut update = self.update.updated_ms(&self.now_ms);
        if new_state != rec.state {
            update = update.state(&new_state);
        }
        let moved = new_state != rec.state;
        let mut h = Handoff::done()
            .guard(Guard::FieldIn {
                key: keys::request(&id),
                field: fields::STATE.into(),
                values: self.expect.iter().map(|s| s.as_str().to_owned()).collect(),
            })
            .guard(Guard::FieldEquals {
                key: keys::request(&id),
                field: fields::AUDIT_HEAD.into(),
                value: rec.audit_head.clone(),
            });
        for g in self.guards {
            h = h.guard(g);
        }
        let mut head = rec.audit_head.clone();
        for event in self.events {
            let record = AuditRecord {
                request_id: id.clone(),
                at_ms: self.now_ms,
                actor: self.actor.clone(),
                trace_id: rec.trace_id.clone(),
                event,
            };
            tracing::info!(request_id = %id, event = record.event.name(), actor = %record.actor, "audit");
            let (entry, next_head) = audit::entry(&head, &record).map_err(|e| StoreError::Encode(e.to_string()))?;
            h = h.write(Write::xadd(keys::audit(&id), entry));
            head = next_head;
        }
        if head != rec.audit_head {
            update = update.audit_head(&head);
        }
        h = h.write(Write::hset(keys::request(&id), update.sets().iter().map(|(k, v)| (*k, v.clone()))));
        if !update.clears().is_empty() {
            h = h.write(Write::new(WriteCmd::HDel, keys::request(&id), update.clears().iter().copied()));
        }
        if moved {
            h = h.write(Write::new(WriteCmd::ZRem, keys::by_state(rec.state), [id.clone()])).write(Write::new(
                WriteCmd::ZAdd,
                keys::by_state(new_state),
                [rec.created_ms.to_string(), id.clone()],
            ));
            // retention counts a request's age from when it finished
            if !person::indexed(new_state) {
                h = h.write(Write::new(WriteCmd::ZAdd, keys::FINISHED, [self.now_ms.to_string(), id.clone()]));
            } else if !person::indexed(rec.state) {
                h = h.write(Write::new(WriteCmd::ZRem, keys::FINISHED, [id.clone()]));
            }
        }
        for w in person.into_iter().chain(self.writes) {
            h = h.write(w);
        }
        for (i, n) in nexts.into_iter().enumerate() {
            let mut job = job(&id, &rec.traceparent, n, self.now_ms)?;
            if plain {
                // a plain commit names its jobs after the request and the audit head it was
                // based on: the same change retried names the same jobs, a later one new ones
                job = job.with_id(successor_id(&format!("{id}/{}", rec.audit_head), n.kind().as_str(), i));
            }
            h = h.then(job);
        }
        Ok((h, new_state))
    }

    /// The change as a worker's hand-off: applied together with the acknowledgement of its job
    /// (the queue derives the successors' ids from the job's).
    pub fn into_handoff(self) -> Result<Handoff, StoreError> {
        self.build(false).map(|(h, _)| h)
    }

    /// Applies the change on its own (the HTTP edge, the scheduler, an operator command).
    pub async fn apply(self, queue: &Queue) -> Result<Applied, StoreError> {
        let (h, state) = self.build(true)?;
        match queue.commit(h).await? {
            CommitOutcome::Applied { ids } => Ok(Applied::Done { jobs: ids, state }),
            CommitOutcome::GuardFailed { .. } => Ok(Applied::Conflict),
            // the jobs of this very change exist: it was applied before
            CommitOutcome::Duplicate { .. } => Ok(Applied::Conflict),
        }
    }
}

/// The commit that creates a request: its record, its ticket index, its first audit record and
/// its first job, guarded so that one ticket makes one request.
pub fn create(
    id: &str,
    ticket: &TicketRef,
    traceparent: &str,
    trace_id: &str,
    now_ms: u64,
    actor: &str,
) -> Result<Handoff, StoreError> {
    let transition = flow::next(Outcome::Received);
    let record = AuditRecord {
        request_id: id.to_owned(),
        at_ms: now_ms,
        actor: actor.to_owned(),
        trace_id: trace_id.to_owned(),
        event: AuditEvent::RequestReceived {
            system: ticket.system.clone(),
            ticket: ticket.number.clone(),
            sys_id: ticket.sys_id.clone(),
        },
    };
    let (entry, head) = audit::entry(GENESIS, &record).map_err(|e| StoreError::Encode(e.to_string()))?;
    let mut rec = RequestRecord::received(id, ticket.clone(), traceparent, trace_id, now_ms, &head);
    if let Some(s) = transition.state {
        rec.state = s;
    }
    let now = now_ms.to_string();
    let mut h = Handoff::default()
        .guard(Guard::KeyAbsent { key: ticket.idempotency_key() })
        .guard(Guard::KeyAbsent { key: keys::request(id) })
        .write(Write::hset(keys::request(id), rec.to_hash()))
        .write(Write::new(WriteCmd::ZAdd, keys::REQUESTS, [now.clone(), id.to_owned()]))
        .write(Write::new(WriteCmd::ZAdd, keys::by_state(rec.state), [now, id.to_owned()]))
        .write(Write::new(WriteCmd::Set, ticket.idempotency_key(), [id.to_owned()]))
        .write(Write::new(WriteCmd::Set, keys::ticket(&ticket.system, &ticket.number), [id.to_owned()]))
        .write(Write::xadd(keys::audit(id), entry));
    for n in transition.next {
        // keyed by the request, not the ticket: the guard above already makes one request per
        // ticket, and a ticket whose key a refused delivery released must be able to start again
        h = h.then(job(id, traceparent, n, now_ms)?.idempotency_key(format!("create:{id}")));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantline_shared::jobs::{RemovalTrigger, TicketUpdate};

    fn rec() -> RequestRecord {
        let t = TicketRef {
            system: "servicenow".into(),
            table: "sc_req_item".into(),
            sys_id: "a".repeat(32),
            number: "RITM0010001".into(),
        };
        let mut r = RequestRecord::received("r1", t, "00-tp-01", "t1", 1_000, GENESIS);
        r.state = RequestState::Active;
        r
    }

    #[test]
    fn a_next_becomes_one_job_with_its_delay_and_trace() {
        let j = job("r1", "00-tp", Next::RemoveAccess { trigger: RemovalTrigger::Expiry, at_ms: Some(5_000) }, 2_000)
            .unwrap();
        assert_eq!(j.queue, "remove-access");
        assert_eq!(j.run_at, RunAt::After(Duration::from_millis(3_000)));
        assert_eq!(j.metadata.get(TRACEPARENT).map(String::as_str), Some("00-tp"));
        let past = job("r1", "", Next::ExecuteGrant { at_ms: Some(1) }, 2_000).unwrap();
        assert_eq!(past.run_at, RunAt::Now, "a time that has passed runs now");
        assert!(past.metadata.is_empty());
    }

    #[test]
    fn a_commit_sets_the_flow_state_chains_the_audit_and_guards_what_it_read() {
        let r = rec();
        let c = Commit::step(&r, JobKind::RemoveAccess, 9_000)
            .event(AuditEvent::TicketUpdated { update: "x".into(), state: "3".into() })
            .set(|u| u.reason(&"done".to_owned()))
            .outcome(Outcome::Removed);
        assert_eq!(c.new_state(), RequestState::Removed);
        let h = c.into_handoff().unwrap();
        assert_eq!(h.jobs.len(), 1);
        assert_eq!(h.jobs[0].queue, "update-ticket");
        assert!(h.jobs[0].id.is_none(), "a hand-off lets the queue name successors");
        assert!(matches!(&h.guards[0], Guard::FieldIn { values, .. } if values == &["active".to_owned()]));
        assert!(matches!(&h.guards[1], Guard::FieldEquals { value, .. } if value == GENESIS));
        let hset = h.writes.iter().find(|w| w.cmd == WriteCmd::HSet).unwrap();
        let pairs: HashMap<&str, &str> = hset.args.chunks(2).map(|c| (c[0].as_str(), c[1].as_str())).collect();
        assert_eq!(pairs["state"], "removed");
        assert_eq!(pairs["reason"], "done");
        assert_eq!(pairs["updated_ms"], "9000");
        assert_ne!(pairs["audit_head"], GENESIS);
        assert_eq!(h.writes.iter().filter(|w| w.cmd == WriteCmd::XAdd).count(), 1);
    }

    #[test]
    fn plain_commits_name_their_jobs_after_the_request_and_head() {
        let r = rec();
        let a = Commit::new(&r, "operator:x", 1).then(Next::UpdateTicket(TicketUpdate::Removed));
        let b = Commit::new(&r, "operator:x", 2).then(Next::UpdateTicket(TicketUpdate::Removed));
        let (ha, _) = a.build(true).unwrap();
        let (hb, _) = b.build(true).unwrap();
        assert!(ha.jobs[0].id.is_some());
        assert_eq!(ha.jobs[0].id, hb.jobs[0].id, "the same change retried names the same job");
        let mut moved = rec();
        moved.audit_head = "other".into();
        let (hc, _) =
            Commit::new(&moved, "operator:x", 3).then(Next::UpdateTicket(TicketUpdate::Removed)).build(true).unwrap();
        assert_ne!(ha.jobs[0].id, hc.jobs[0].id);
    }
}
