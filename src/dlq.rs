//! `grantline dlq`: dead letters listed page by page, redriven or discarded; closing a letter
//! queues the resolve of the page raised for it (`resolve-alert`).

use std::io::Write;

use anyhow::Result;
use grantline_queue::Queue;
use grantline_shared::jobs::LetterClosed;

/// Letters are read from Redis this many at a time.
pub const PAGE: usize = 500;

/// Writes the dead letters of `queue` as JSON lines, oldest first, starting after `after`,
/// at most `limit` of them (every one when `None`), reading [`PAGE`] at a time. Returns how
/// many were written.
pub async fn list(
    q: &Queue,
    queue: &str,
    after: Option<&str>,
    limit: Option<usize>,
    out: &mut impl Write,
) -> Result<usize> {
    let mut cursor = after.map(str::to_owned);
    let mut written = 0;
    loop {
        let want = limit.map_or(PAGE, |l| l.saturating_sub(written).min(PAGE));
        if want == 0 {
            return Ok(written);
        }
        let batch = q.dead_letters(queue, cursor.as_deref(), want).await?;
        for d in &batch {
            writeln!(out, "{}", serde_json::to_string(d)?)?;
        }
        written += batch.len();
        match batch.last() {
            Some(last) if batch.len() == want => cursor = Some(last.id.clone()),
            _ => return Ok(written),
        }
    }
}

/// Redrives or discards one letter and queues the resolve of its page. `None`: no such letter
/// (a resolve is still queued when the letter is gone but its page is open).
pub async fn close(q: &Queue, queue: &str, id: &str, how: LetterClosed) -> Result<Option<String>> {
    Ok(grantline_workers::paging::close_letter(q, queue, id, how, "cli").await?)
}

/// Redrives every dead letter of `queue`, each with the resolve of its page; returns how many.
pub async fn retry_all(q: &Queue, queue: &str) -> Result<usize> {
    let mut n = 0;
    let mut cursor: Option<String> = None;
    loop {
        let batch = q.dead_letters(queue, cursor.as_deref(), PAGE).await?;
        let Some(last) = batch.last() else { return Ok(n) };
        cursor = Some(last.id.clone());
        for d in &batch {
            if close(q, queue, &d.id, LetterClosed::Redriven).await?.is_some() {
                n += 1;
            }
        }
    }
}
