//! Identity: accounts, sign-in sessions, tokens, roles and API keys.

pub mod entity;
pub mod service;

pub use service::AuthApi;
