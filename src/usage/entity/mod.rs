//! Tables of the usage domain.

pub mod plan;
pub mod plan_limit;
