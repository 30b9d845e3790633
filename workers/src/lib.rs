//! grantline-workers
