//! Tables of the usage domain.

pub mod counter;
pub mod limit_override;
pub mod metric;
pub mod plan;
pub mod plan_limit;
pub mod reservation;
pub mod warning;
