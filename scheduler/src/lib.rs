//! grantline-scheduler
