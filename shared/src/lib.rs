//! The vocabulary of grantline: ids, job kinds and payloads, error classes, and the
//! other contracts every crate agrees on. Pure: no IO, no HTTP, no clock of its own.

pub mod audit;
pub mod cards;
pub mod clock;
pub mod error;
pub mod flow;
pub mod jobs;
pub mod kinds;
pub mod link;
pub mod metrics;
pub mod policy;
pub mod receipt;
pub mod record;
pub mod request;
pub mod secret;
pub mod trace;

pub use clock::Clock;
pub use error::{ErrorClass, StepError};
pub use kinds::JobKind;
pub use secret::Secret;
