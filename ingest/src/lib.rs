//! grantline-ingest
