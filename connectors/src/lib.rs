//! grantline-connectors
