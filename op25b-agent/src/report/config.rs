//! `[reports]`: who the abuse reports come from. The same organisation is
//! X-ARF's `reporter` (who saw the abuse) and `sender` (who files the report).

use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The section as written; validated by [`validate`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReports {
    org: Option<Spanned<String>>,
    contact: Option<Spanned<String>>,
    domain: Option<Spanned<String>>,
}

/// A validated `[reports]` section: X-ARF `contact_info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportsConfig {
    /// Organisation name (at most 200 characters).
    pub org: String,
    /// The abuse desk's email address.
    pub contact: String,
    /// The organisation's domain, for the recipient to verify.
    pub domain: String,
}

/// One problem in the section; `span` is where in the config text it is
/// (`None`: a missing key, placed at the section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionProblem {
    pub span: Option<Range<usize>>,
    pub key: String,
    pub message: String,
}

/// X-ARF v4 `contact_info.org` maxLength.
const MAX_ORG_CHARS: usize = 200;

/// Checks every key, collecting every problem (not just the first).
pub fn validate(raw: &RawReports) -> Result<ReportsConfig, Vec<SectionProblem>> {
    let mut problems = Vec::new();
    let mut take = |value: &Option<Spanned<String>>,
                    key: &str,
                    check: fn(&str) -> Result<(), String>|
     -> String {
        let Some(value) = value else {
            problems.push(SectionProblem {
                span: None,
                key: format!("reports.{key}"),
                message: "missing: [reports] needs org, contact and domain".into(),
            });
            return String::new();
        };
        if let Err(message) = check(value.get_ref()) {
            problems.push(SectionProblem {
                span: Some(value.span()),
                key: format!("reports.{key}"),
                message,
            });
        }
        value.get_ref().clone()
    };
    let org = take(&raw.org, "org", check_org);
    let contact = take(&raw.contact, "contact", check_email);
    let domain = take(&raw.domain, "domain", check_domain);
    if problems.is_empty() {
        Ok(ReportsConfig {
            org,
            contact,
            domain,
        })
    } else {
        Err(problems)
    }
}

fn check_org(org: &str) -> Result<(), String> {
    if org.trim().is_empty() {
        return Err("empty organisation name".into());
    }
    if org.chars().count() > MAX_ORG_CHARS {
        return Err(format!(
            "longer than {MAX_ORG_CHARS} characters (X-ARF limit)"
        ));
    }
    if org.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    Ok(())
}

fn check_email(contact: &str) -> Result<(), String> {
    let options = email_address::Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
        allow_long_local_parts: false,
    };
    email_address::EmailAddress::parse_with_options(contact, options)
        .map(drop)
        .map_err(|e| format!("{contact:?} is not an email address like abuse@example.net: {e}"))
}

/// An RFC 1123 host name with at least two labels (the organisation's domain).
pub fn check_domain(domain: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{domain:?} is not a domain name: {why}"));
    if domain.len() > 253 {
        return bad("longer than 253 characters");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return bad("needs at least two labels, like example.net");
    }
    for label in labels {
        if label.is_empty() || label.len() > 63 {
            return bad("each label must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("use letters, digits and '-' only");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ReportsConfig, Vec<SectionProblem>> {
        validate(&toml::from_str::<RawReports>(text).unwrap())
    }

    #[test]
    fn a_complete_section_validates() {
        let got = parse(
            "org = \"Example ISP\"\ncontact = \"abuse@isp.example\"\ndomain = \"isp.example\"\n",
        )
        .unwrap();
        assert_eq!(
            got,
            ReportsConfig {
                org: "Example ISP".into(),
                contact: "abuse@isp.example".into(),
                domain: "isp.example".into()
            }
        );
    }

    #[test]
    fn each_bad_key_is_named_with_its_span() {
        let text =
            "org = \"\"\ncontact = \"Abuse <abuse@isp.example>\"\ndomain = \"isp_example\"\n";
        let problems = parse(text).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["reports.org", "reports.contact", "reports.domain"]);
        for p in &problems {
            let span = p.span.clone().expect("a span");
            let line = text[..span.start].matches('\n').count() + 1;
            let expected = match p.key.as_str() {
                "reports.org" => 1,
                "reports.contact" => 2,
                _ => 3,
            };
            assert_eq!(line, expected, "{p:?}");
        }
    }

    #[test]
    fn missing_keys_and_bad_values_are_refused() {
        let problems = parse("org = \"Example ISP\"\n").unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.message.starts_with("missing")));
        for bad in [
            "abuse",
            "abuse@localhost",
            "@isp.example",
            "abuse@[192.0.2.1]",
        ] {
            assert!(check_email(bad).is_err(), "{bad} accepted");
        }
        for bad in [
            "localhost",
            "-isp.example",
            "isp..example",
            "isp example.net",
        ] {
            assert!(check_domain(bad).is_err(), "{bad} accepted");
        }
        assert!(check_org(&"x".repeat(201)).is_err());
        assert!(check_org("Example\nISP").is_err());
        assert!(toml::from_str::<RawReports>("org = \"x\"\nemail = \"a@b.c\"\n").is_err());
    }
}

#[cfg(test)]
mod config_file_tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn check_config_names_file_line_and_key() {
        let path = Path::new("/etc/op25b/op25b.toml");
        let text = "[reports]\norg = \"Example ISP\"\ncontact = \"not-an-address\"\ndomain = \"isp.example\"\n";
        let problems: Vec<String> = Config::parse(path, text)
            .unwrap_err()
            .problems
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("/etc/op25b/op25b.toml:3: reports.contact: \"not-an-address\" is not an email address"),
            "{problems:?}"
        );
        let missing = Config::parse(path, "\n[reports]\norg = \"Example ISP\"\n").unwrap_err();
        let texts: Vec<String> = missing.problems.iter().map(ToString::to_string).collect();
        assert!(
            texts
                .iter()
                .any(|p| p.starts_with("/etc/op25b/op25b.toml:2: reports.contact: missing")),
            "{texts:?}"
        );
        let unknown =
            Config::parse(path, "[reports]\norg = \"x\"\nmail = \"a@b.example\"\n").unwrap_err();
        assert!(
            unknown.problems[0]
                .to_string()
                .contains("op25b.toml:3: unknown field `mail`"),
            "{unknown}"
        );
    }

    #[test]
    fn a_valid_section_reaches_the_config() {
        let config = Config::parse(
            Path::new("x.toml"),
            "[reports]\norg = \"Example ISP\"\ncontact = \"abuse@isp.example\"\ndomain = \"isp.example\"\n",
        )
        .unwrap();
        assert_eq!(config.reports.unwrap().domain, "isp.example");
        assert!(Config::parse(Path::new("x.toml"), "")
            .unwrap()
            .reports
            .is_none());
    }
}
