//! Tables of the identity domain.

pub mod user;
