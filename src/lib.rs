//! debrief: the backend of a Meeting Intelligence product.
//!
//! A gRPC service (with gRPC-Web for browsers) that stores meeting
//! recordings, processes their audio, and turns what it learns into
//! speaking-skill practice, progress tracking and usage limits. Each domain
//! is a module holding its service, queries and rules, and reads only the
//! domains below it; infrastructure (configuration, database, storage,
//! audio, errors) sits below every domain, and the transports and server
//! assembly above. `docs/architecture.md` has the rules, which
//! `tests/architecture.rs` checks.

pub mod admin;
pub mod audio;
pub mod audit;
pub mod auth;
pub mod caller;
pub mod clock;
pub mod config;
pub mod context;
pub mod db;
pub mod edge;
pub mod erasure;
pub mod error;
pub mod events;
pub mod export;
pub mod housekeeping;
pub mod lifecycle;
pub mod meetings;
pub mod metrics;
pub mod names;
pub mod ops;
pub mod pagination;
pub mod pb;
pub mod practice;
pub mod processing;
pub mod profiles;
pub mod progress;
pub mod provider;
pub mod scratch;
pub mod server;
pub mod shared;
pub mod skills;
pub mod storage;
pub mod telemetry;
pub mod text;
pub mod timestamps;
pub mod update_mask;
pub mod uploads;
pub mod usage;

pub use config::Config;
pub use server::{AppState, Application};
