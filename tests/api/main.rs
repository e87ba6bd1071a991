//! Integration tests: every test talks to a real server (or the real
//! binary) and runs on SQLite and on Postgres.

mod helpers;

mod accounts;
mod analytics;
mod api_keys;
mod auth;
mod bench_sql;
mod cli;
mod clients;
mod database;
mod deletion;
mod edge;
mod errors;
mod events;
mod faults;
mod meetings;
mod ops;
mod plans;
mod practice;
mod processing;
mod profiles;
mod progress;
mod properties;
mod replicas;
mod restarts;
mod transports;
mod tus;
mod uploads;
mod usage;
