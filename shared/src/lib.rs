//! grantline-shared
