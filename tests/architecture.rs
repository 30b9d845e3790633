//! ARCHITECTURE.md stays true to the code: every job kind appears in the lifecycle diagram.

use grantline_shared::JobKind;

#[test]
fn every_job_kind_appears_in_the_lifecycle_diagram() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md")).unwrap_or_default();
    let start = doc.find("```mermaid").unwrap_or(0);
    let end = doc[start..].find("\n```\n").map(|e| start + e).unwrap_or(doc.len());
    let diagram = &doc[start..end];
    assert!(diagram.contains("stateDiagram"), "ARCHITECTURE.md has a lifecycle diagram");
    for kind in JobKind::ALL {
        assert!(diagram.contains(kind.as_str()), "job kind {kind} is missing from the lifecycle diagram");
    }
}
