//! Server-rendered pages (askama). Pages get plain data structs; they never query
//! anything themselves.

pub mod chart;
mod docs;
pub mod format;
pub mod pages;

pub use docs::{ApiDocsPage, DocGroup, DocOperation};

/// The pages' one stylesheet, served by strata itself (no resource from elsewhere).
pub const STYLESHEET: &str = include_str!("../static/strata.css");
