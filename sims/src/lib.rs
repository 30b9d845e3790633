//! grantline-sims
