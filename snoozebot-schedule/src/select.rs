//! Which schedule an instance follows, from its tags: a named schedule of the config file
//! (`snoozebot-schedule=office`), an inline one in the same tag's value
//! (`snoozebot-schedule=Mon-Fri 08:00-19:00 Europe/Berlin`), or a Cloud Custodian offhours tag.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use snoozebot_core::InstanceInfo;

use crate::parse::{CustodianDefaults, CustodianTag, parse_custodian, parse_inline};
use crate::plan::Overrides;
use crate::spec::Schedule;

/// The tag that names an instance's schedule, unless configured otherwise.
pub const DEFAULT_TAG: &str = "snoozebot-schedule";

/// Distinct inline tag values remembered, parsed (a fleet repeats a few values thousands of
/// times).
const INLINE_CACHE: usize = 4096;

/// What an instance's tags select.
#[derive(Debug, Clone)]
pub enum Selection {
    /// No schedule tag: never touched.
    Unscheduled,
    /// A Custodian `off` tag: never touched.
    OptedOut,
    /// A schedule tag that does not parse: never touched, reported.
    Invalid(String),
    /// This schedule, with these override rules.
    Scheduled(Arc<Schedule>, Overrides),
}

/// How Cloud Custodian tags are read.
#[derive(Debug, Clone)]
pub struct CustodianConfig {
    /// The tag (Custodian's default: `maid_offhours`).
    pub tag: String,
    /// What a tag falls back to.
    pub defaults: CustodianDefaults,
    /// The override rules for instances so tagged.
    pub overrides: Overrides,
}

/// Every schedule a run knows, and how tags select them.
#[derive(Debug)]
pub struct Schedules {
    named: BTreeMap<String, (Arc<Schedule>, Overrides)>,
    tag: String,
    default_zone: String,
    inline_overrides: Overrides,
    custodian: Option<CustodianConfig>,
    inline: Mutex<HashMap<String, Result<Arc<Schedule>, String>>>,
}

impl Schedules {
    /// No named schedules yet; inline ones in `UTC` unless they name a zone.
    pub fn new() -> Self {
        Schedules {
            named: BTreeMap::new(),
            tag: DEFAULT_TAG.to_owned(),
            default_zone: "UTC".to_owned(),
            inline_overrides: Overrides::default(),
            custodian: None,
            inline: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a named schedule.
    pub fn with_schedule(mut self, schedule: Schedule, overrides: Overrides) -> Self {
        self.named
            .insert(schedule.name().to_owned(), (Arc::new(schedule), overrides));
        self
    }

    /// Selects by this tag instead of [`DEFAULT_TAG`].
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// Inline schedules without a zone are in `zone`, with `overrides`.
    pub fn with_inline_defaults(mut self, zone: impl Into<String>, overrides: Overrides) -> Self {
        self.default_zone = zone.into();
        self.inline_overrides = overrides;
        self
    }

    /// Also reads Cloud Custodian offhours tags.
    pub fn with_custodian(mut self, custodian: CustodianConfig) -> Self {
        self.custodian = Some(custodian);
        self
    }

    /// The named schedules.
    pub fn named(&self) -> impl Iterator<Item = &Schedule> {
        self.named.values().map(|(schedule, _)| &**schedule)
    }

    /// The named schedules with their override rules.
    pub fn named_with_overrides(&self) -> impl Iterator<Item = (&Schedule, Overrides)> {
        self.named
            .values()
            .map(|(schedule, overrides)| (&**schedule, *overrides))
    }

    /// What `instance`'s tags select. The schedule tag wins over a Custodian tag.
    pub fn select(&self, instance: &InstanceInfo) -> Selection {
        if let Some(value) = instance.tags.get(&self.tag) {
            let value = value.trim();
            if let Some((schedule, overrides)) = self.named.get(value) {
                return Selection::Scheduled(Arc::clone(schedule), *overrides);
            }
            return match self.inline(value) {
                Ok(schedule) => Selection::Scheduled(schedule, self.inline_overrides),
                Err(reason) => Selection::Invalid(format!(
                    "{}={value:?}: no schedule of that name, and not an inline schedule: {reason}",
                    self.tag
                )),
            };
        }
        let Some(custodian) = &self.custodian else {
            return Selection::Unscheduled;
        };
        let Some(value) = instance.tags.get(&custodian.tag) else {
            return Selection::Unscheduled;
        };
        match parse_custodian(value, &custodian.defaults) {
            Ok(CustodianTag::OptedOut) => Selection::OptedOut,
            Ok(CustodianTag::Schedule(schedule)) => {
                Selection::Scheduled(Arc::new(schedule), custodian.overrides)
            }
            Err(error) => Selection::Invalid(format!("{}: {error}", custodian.tag)),
        }
    }

    fn inline(&self, value: &str) -> Result<Arc<Schedule>, String> {
        let mut cache = self.inline.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(parsed) = cache.get(value) {
            return parsed.clone();
        }
        let parsed = parse_inline(value, &self.default_zone)
            .map(Arc::new)
            .map_err(|error| error.to_string());
        if cache.len() >= INLINE_CACHE {
            cache.clear();
        }
        cache.insert(value.to_owned(), parsed.clone());
        parsed
    }
}

impl Default for Schedules {
    fn default() -> Self {
        Schedules::new()
    }
}
