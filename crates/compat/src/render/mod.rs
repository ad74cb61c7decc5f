//! Reports for people: plain text (optionally coloured) and one
//! self-contained HTML page. Both return strings; printing is the caller's.

mod html;
mod text;

pub use html::report_html;
pub use text::{platform_text, report_text};
