//! `[reports]` in the configuration: its keys and checks live with the
//! reports ([`crate::report::config`]); this places their problems.

use toml::Spanned;

use super::check::Checker;
use crate::report::{config::RawReports, ReportsConfig};

impl Checker<'_> {
    /// The validated section, or `None` with every problem recorded; a
    /// missing key is placed at the section's line.
    pub fn reports(&mut self, section: &Spanned<RawReports>) -> Option<ReportsConfig> {
        crate::report::config::validate(section.get_ref())
            .map_err(|problems| {
                for p in problems {
                    self.at(&p.span.unwrap_or_else(|| section.span()), p.key, p.message);
                }
            })
            .ok()
    }
}
