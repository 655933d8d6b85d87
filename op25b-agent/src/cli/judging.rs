//! The data plane `explain` and `replay` judge with: the live pinned
//! policy when op25b is loaded, else a configuration's.

use std::path::Path;

use super::CommandError;
use crate::{
    config::Config,
    dataplane::{pins::PinLayout, runtime_config, Dataplane, Maps},
    policy::Policy,
};

/// A data plane, the policy it holds, and what it was taken from.
pub struct Judging {
    pub dataplane: Dataplane,
    pub policy: Policy,
    pub against: String,
}

/// The live pinned policy if op25b is loaded at `pins`; else, unless
/// `live_only`, `config`'s.
pub fn live_or_configured(
    config: Option<&Config>,
    pins: &Path,
    live_only: bool,
) -> Result<Judging, CommandError> {
    let maps = PinLayout::new(pins).maps_dir();
    if runtime_config::pinned_in(&maps).is_some() {
        let mut dataplane = Dataplane::load(&Maps::PinnedPolicy(maps.clone()), 0)?;
        let policy = dataplane.read_policy()?;
        return Ok(Judging {
            dataplane,
            policy,
            against: format!("the live maps at {}", maps.display()),
        });
    }
    if live_only {
        return Err(CommandError::NotLoaded(pins.to_owned()));
    }
    let config = config.ok_or_else(|| CommandError::NotLoaded(pins.to_owned()))?;
    configured(config)
}

/// A private data plane holding `config`'s policy as of now (entries past
/// their `expires_at` left out, as the agent would enforce it).
pub fn configured(config: &Config) -> Result<Judging, CommandError> {
    let policy = config.policy.active(crate::clock::now_unix());
    let mut dataplane = Dataplane::load(&Maps::Private, 0)?;
    dataplane.apply(&policy)?;
    Ok(Judging {
        dataplane,
        policy,
        against: format!("the policy of {}", config.path.display()),
    })
}
