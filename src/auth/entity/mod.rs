//! Tables of the identity domain.

pub mod api_key;
pub mod refresh_token;
pub mod session;
pub mod sign_in_failure;
pub mod stream_ticket;
pub mod user;
pub mod user_token;
