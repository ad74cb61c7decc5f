//! Device access rules: `linux.resources.devices` turned into typed
//! [`DeviceRule`]s, the default devices every container gets, and the
//! cgroup v1 `devices.allow` / `devices.deny` writer.
//!
//! The meaning of a rule list is the same on both cgroup versions and is
//! the one runc gives it: rules are read in order, the **last** rule that
//! matches an access decides it, and an access no rule matches is denied.
//! Matching is per access bit: for an `open(O_RDWR)` of `c 1:3`, the read
//! and the write are decided by the last rule that matches `c 1:3` and
//! names `r` (resp. `w`). Allow rules for the devices the runtime always
//! creates ([`default_rules`]) go after the config's last rule that covers
//! every device, so that a later rule of the config can still deny one
//! (runc appends them at the end, where they override such a deny).
//!
//! cgroup v2 has no devices files; [`super::bpf`] compiles the same list
//! into an eBPF program. cgroup v1 keeps a default (allow or deny) plus a
//! list of exceptions, and a deny written to `devices.deny` only removes an
//! exception with exactly the same type and numbers. [`V1Plan`] therefore
//! computes the end state first: the default is given by the last `a *:*
//! rwm` rule (deny when there is none), and every later rule with the other
//! verdict becomes an exception, minus the bits that later rules with the
//! default's verdict take back. When such a later rule covers only part of
//! an exception (a deny of `c 1:3` after an allow of `c *:*`), cgroup v1
//! cannot express the result, and planning fails with
//! [`CgroupError::DevicesInexpressible`] instead of granting more than the
//! list says. Rules of type `a` that are not the full `a *:* rwm` are split
//! into a `c` and a `b` rule, because the kernel reads any `a` as a reset.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::files;
use super::CgroupError;

/// The access bits, with the values of `BPF_DEVCG_ACC_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Access(pub(crate) u8);

impl Access {
    pub(crate) const MKNOD: Access = Access(1);
    pub(crate) const READ: Access = Access(2);
    pub(crate) const WRITE: Access = Access(4);
    pub(crate) const ALL: Access = Access(7);
    pub(crate) const NONE: Access = Access(0);

    /// Parses `rwm` letters; empty means all.
    fn parse(s: &str) -> Option<Access> {
        if s.is_empty() {
            return Some(Access::ALL);
        }
        let mut bits = 0;
        for c in s.chars() {
            bits |= match c {
                'r' => Access::READ.0,
                'w' => Access::WRITE.0,
                'm' => Access::MKNOD.0,
                _ => return None,
            };
        }
        Some(Access(bits))
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
    fn and(self, other: Access) -> Access {
        Access(self.0 & other.0)
    }
    fn minus(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }
    fn or(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.0 & bit.0 != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Which devices a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum DeviceKind {
    /// Character and block devices.
    All,
    /// Character devices.
    Char,
    /// Block devices.
    Block,
}

impl DeviceKind {
    fn letter(self) -> char {
        match self {
            DeviceKind::All => 'a',
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        }
    }
}

/// One device rule; `None` numbers are wildcards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub(crate) allow: bool,
    pub(crate) kind: DeviceKind,
    pub(crate) major: Option<u32>,
    pub(crate) minor: Option<u32>,
    pub(crate) access: Access,
}

impl fmt::Display for DeviceRule {
    /// The v1 file syntax, prefixed with the verdict: `allow c 1:3 rwm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allow { "allow" } else { "deny" };
        write!(f, "{verdict} {}", self.entry())
    }
}

fn num(n: Option<u32>) -> String {
    n.map_or_else(|| "*".to_owned(), |n| n.to_string())
}

impl DeviceRule {
    /// A character device rule, for tests and the default list.
    pub(crate) const fn char_dev(allow: bool, major: u32, minor: Option<u32>) -> Self {
        DeviceRule {
            allow,
            kind: DeviceKind::Char,
            major: Some(major),
            minor,
            access: Access::ALL,
        }
    }

    /// `allow a *:* rwm` or `deny a *:* rwm`.
    #[cfg(test)]
    pub(crate) const fn everything(allow: bool) -> Self {
        DeviceRule {
            allow,
            kind: DeviceKind::All,
            major: None,
            minor: None,
            access: Access::ALL,
        }
    }

    /// Converts entry `index` of `linux.resources.devices`.
    pub(crate) fn from_oci(index: usize, rule: &LinuxDeviceCgroup) -> Result<Self, CgroupError> {
        let bad = |reason| CgroupError::InvalidDeviceRule { index, reason };
        let kind = match rule.typ() {
            None | Some(LinuxDeviceType::A) => DeviceKind::All,
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => DeviceKind::Char,
            Some(LinuxDeviceType::B) => DeviceKind::Block,
            Some(LinuxDeviceType::P) => {
                return Err(bad(
                    "type \"p\" (FIFO) is not controlled by the devices cgroup",
                ))
            }
        };
        let number = |n: Option<i64>| -> Result<Option<u32>, CgroupError> {
            match n {
                None | Some(-1) => Ok(None),
                Some(n) => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| bad("major and minor must be -1 (any) or 0..=4294967295")),
            }
        };
        let access = Access::parse(rule.access().as_deref().unwrap_or(""))
            .ok_or_else(|| bad("access must be letters among \"rwm\""))?;
        Ok(DeviceRule {
            allow: rule.allow(),
            kind,
            major: number(rule.major())?,
            minor: number(rule.minor())?,
            access,
        })
    }

    /// The v1 file syntax without the verdict: `c 1:3 rwm`.
    pub(crate) fn entry(&self) -> String {
        format!(
            "{} {}:{} {}",
            self.kind.letter(),
            num(self.major),
            num(self.minor),
            self.access
        )
    }

    fn is_everything(&self) -> bool {
        self.kind == DeviceKind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == Access::ALL
    }

    /// Whether every device this rule names is named by `other`.
    fn within(&self, other: &DeviceRule) -> bool {
        (other.kind == DeviceKind::All || other.kind == self.kind)
            && (other.major.is_none() || other.major == self.major)
            && (other.minor.is_none() || other.minor == self.minor)
    }

    /// Whether no device is named by both rules.
    fn disjoint(&self, other: &DeviceRule) -> bool {
        let differ =
            |a: Option<u32>, b: Option<u32>| matches!((a, b), (Some(x), Some(y)) if x != y);
        (self.kind != DeviceKind::All && other.kind != DeviceKind::All && self.kind != other.kind)
            || differ(self.major, other.major)
            || differ(self.minor, other.minor)
    }

    fn key(&self) -> (DeviceKind, Option<u32>, Option<u32>) {
        (self.kind, self.major, self.minor)
    }
}

/// Allow rules for the devices the runtime always creates: null, zero,
/// full, random, urandom, tty, console, ptmx and the pts devices.
pub(crate) fn default_rules() -> [DeviceRule; 9] {
    [
        DeviceRule::char_dev(true, 1, Some(3)),
        DeviceRule::char_dev(true, 1, Some(5)),
        DeviceRule::char_dev(true, 1, Some(7)),
        DeviceRule::char_dev(true, 1, Some(8)),
        DeviceRule::char_dev(true, 1, Some(9)),
        DeviceRule::char_dev(true, 5, Some(0)),
        DeviceRule::char_dev(true, 5, Some(1)),
        DeviceRule::char_dev(true, 5, Some(2)),
        DeviceRule::char_dev(true, 136, None),
    ]
}

/// The config's rules with [`default_rules`] inserted after the last rule
/// that covers every device (the usual leading `deny a *:* rwm`), or first
/// when there is none: the defaults survive a blanket deny, and a later
/// rule of the config about a default device (a deny of `c 1:5`) still
/// decides it.
pub(crate) fn rules_with_defaults(
    spec: &[LinuxDeviceCgroup],
) -> Result<Vec<DeviceRule>, CgroupError> {
    let mut rules = spec
        .iter()
        .enumerate()
        .map(|(i, r)| DeviceRule::from_oci(i, r))
        .collect::<Result<Vec<_>, _>>()?;
    let at = rules
        .iter()
        .rposition(|r| r.kind == DeviceKind::All && r.major.is_none() && r.minor.is_none())
        .map_or(0, |i| i + 1);
    rules.splice(at..at, default_rules());
    Ok(rules)
}

/// The end state of a v1 devices cgroup for a rule list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Plan {
    /// The default verdict (`a` written to `devices.allow` or
    /// `devices.deny`).
    pub(crate) default_allow: bool,
    /// Exceptions to the default, each with the opposite verdict, merged
    /// per device (type, major, minor).
    pub(crate) exceptions: Vec<DeviceRule>,
}

impl V1Plan {
    /// Computes the end state, or fails when v1 cannot express the list.
    pub(crate) fn new(rules: &[DeviceRule]) -> Result<Self, CgroupError> {
        // Split partial `a` rules into `c` and `b`.
        let mut expanded = Vec::with_capacity(rules.len());
        for r in rules {
            if r.kind == DeviceKind::All && !r.is_everything() {
                expanded.push(DeviceRule {
                    kind: DeviceKind::Char,
                    ..*r
                });
                expanded.push(DeviceRule {
                    kind: DeviceKind::Block,
                    ..*r
                });
            } else {
                expanded.push(*r);
            }
        }
        let start = expanded.iter().rposition(DeviceRule::is_everything);
        let default_allow = start.is_some_and(|i| expanded[i].allow);
        let rest = &expanded[start.map_or(0, |i| i + 1)..];

        let mut merged: BTreeMap<(DeviceKind, Option<u32>, Option<u32>), Access> = BTreeMap::new();
        for (i, r) in rest.iter().enumerate() {
            if r.allow == default_allow {
                continue;
            }
            let mut bits = r.access;
            for (j, later) in rest.iter().enumerate().skip(i + 1) {
                let common = bits.and(later.access);
                if later.allow != default_allow || common.is_empty() || r.disjoint(later) {
                    continue;
                }
                if r.within(later) {
                    bits = bits.minus(later.access);
                    continue;
                }
                // `later` takes back part of `r`. Fine only if a rule after
                // it gives that part back again.
                let refilled = rest[j + 1..].iter().any(|again| {
                    again.allow == r.allow
                        && later.within(again)
                        && common.minus(again.access).is_empty()
                });
                if !refilled {
                    return Err(CgroupError::DevicesInexpressible {
                        rule: later.to_string(),
                        earlier: r.to_string(),
                    });
                }
            }
            if !bits.is_empty() {
                let e = merged.entry(r.key()).or_insert(Access::NONE);
                *e = e.or(bits);
            }
        }
        let exceptions = merged
            .into_iter()
            .map(|((kind, major, minor), access)| DeviceRule {
                allow: !default_allow,
                kind,
                major,
                minor,
                access,
            })
            .collect();
        Ok(V1Plan {
            default_allow,
            exceptions,
        })
    }
}

/// Parses `devices.list`: `None` when the cgroup allows everything by
/// default (the kernel then shows only `a *:* rwm`), else the allowed
/// exceptions.
fn parse_devices_list(text: &str) -> Option<Vec<DeviceRule>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(t), Some(nums), Some(acc)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let kind = match t {
            "a" => return None,
            "c" => DeviceKind::Char,
            "b" => DeviceKind::Block,
            _ => continue,
        };
        let Some((ma, mi)) = nums.split_once(':') else {
            continue;
        };
        let n = |s: &str| if s == "*" { None } else { s.parse().ok() };
        out.push(DeviceRule {
            allow: true,
            kind,
            major: n(ma),
            minor: n(mi),
            access: Access::parse(acc).unwrap_or(Access::NONE),
        });
    }
    Some(out)
}

/// Brings the v1 devices cgroup at `dir` to the state `rules` describe.
///
/// With a default of deny (the usual case, and the state of a cgroup this
/// plan was applied to before) only the difference to the current
/// exceptions is written, allows first, so that `update` never briefly
/// takes away a device the container keeps. Otherwise the default is reset
/// by writing `a`, then the exceptions are written.
pub(crate) fn apply_v1(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let plan = V1Plan::new(rules)?;
    if plan.default_allow {
        files::write(dir, "devices.allow", "a")?;
        for e in &plan.exceptions {
            files::write(dir, "devices.deny", &e.entry())?;
        }
        return Ok(());
    }
    let current = match parse_devices_list(&files::read(dir, "devices.list")?) {
        Some(current) => current,
        None => {
            files::write(dir, "devices.deny", "a")?;
            Vec::new()
        }
    };
    let have: BTreeMap<_, _> = current.iter().map(|r| (r.key(), r.access)).collect();
    let want: BTreeMap<_, _> = plan
        .exceptions
        .iter()
        .map(|r| (r.key(), r.access))
        .collect();
    for e in &plan.exceptions {
        let add = e
            .access
            .minus(have.get(&e.key()).copied().unwrap_or(Access::NONE));
        if !add.is_empty() {
            let rule = DeviceRule { access: add, ..*e };
            files::write(dir, "devices.allow", &rule.entry())?;
        }
    }
    for c in &current {
        let remove = c
            .access
            .minus(want.get(&c.key()).copied().unwrap_or(Access::NONE));
        if !remove.is_empty() {
            let rule = DeviceRule {
                access: remove,
                ..*c
            };
            files::write(dir, "devices.deny", &rule.entry())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        kind: DeviceKind,
        major: Option<u32>,
        minor: Option<u32>,
        acc: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: Access::parse(acc).unwrap(),
        }
    }

    #[test]
    fn from_oci() {
        let r = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(-1)
            .access("rw")
            .build()
            .unwrap();
        let rule = DeviceRule::from_oci(0, &r).unwrap();
        assert_eq!(rule.to_string(), "allow c 10:* rw");
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .build()
            .unwrap();
        assert_eq!(
            DeviceRule::from_oci(0, &deny_all).unwrap(),
            DeviceRule::everything(false)
        );
        let bad = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rwx")
            .build()
            .unwrap();
        let err = DeviceRule::from_oci(3, &bad).unwrap_err().to_string();
        assert!(err.contains("devices[3]"), "{err}");
        let fifo = LinuxDeviceCgroupBuilder::default()
            .typ(LinuxDeviceType::P)
            .build()
            .unwrap();
        assert!(DeviceRule::from_oci(0, &fifo).is_err());
    }

    #[test]
    fn defaults_follow_the_last_blanket_rule() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .build()
            .unwrap();
        let deny_zero = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(5)
            .access("rwm")
            .build()
            .unwrap();
        let rules = rules_with_defaults(std::slice::from_ref(&deny_all)).unwrap();
        assert_eq!(rules.len(), 10);
        assert_eq!(rules[0], DeviceRule::everything(false));
        assert_eq!(rules[9].entry(), "c 136:* rwm");

        // A deny of a default device after the blanket deny keeps its effect.
        let rules = rules_with_defaults(&[deny_all, deny_zero.clone()]).unwrap();
        assert_eq!(rules.len(), 11);
        assert_eq!(rules[10], DeviceRule::char_dev(false, 1, Some(5)));
        let plan = V1Plan::new(&rules).unwrap();
        let entries: Vec<String> = plan.exceptions.iter().map(DeviceRule::entry).collect();
        assert!(!entries.contains(&"c 1:5 rwm".to_owned()), "{entries:?}");
        assert!(entries.contains(&"c 1:3 rwm".to_owned()), "{entries:?}");

        // Without a blanket rule, the defaults come first.
        let rules = rules_with_defaults(&[deny_zero]).unwrap();
        assert_eq!(rules[0], DeviceRule::char_dev(true, 1, Some(3)));
        assert_eq!(rules[9], DeviceRule::char_dev(false, 1, Some(5)));
    }

    #[test]
    fn v1_plan_deny_first() {
        let mut rules = vec![
            DeviceRule::everything(false),
            rule(true, DeviceKind::Char, Some(10), Some(200), "rwm"),
            rule(false, DeviceKind::Char, Some(10), Some(200), "w"),
        ];
        rules.extend(default_rules());
        let plan = V1Plan::new(&rules).unwrap();
        assert!(!plan.default_allow);
        let entries: Vec<String> = plan.exceptions.iter().map(DeviceRule::entry).collect();
        assert!(entries.contains(&"c 10:200 rm".to_owned()), "{entries:?}");
        assert!(entries.contains(&"c 1:3 rwm".to_owned()));
        assert!(entries.contains(&"c 136:* rwm".to_owned()));
        assert_eq!(entries.len(), 10);
    }

    #[test]
    fn v1_plan_no_reset_means_default_deny() {
        let plan = V1Plan::new(&default_rules()).unwrap();
        assert!(!plan.default_allow);
        assert_eq!(plan.exceptions.len(), 9);
    }

    #[test]
    fn v1_plan_allow_all_then_deny() {
        let rules = [
            DeviceRule::everything(false),
            DeviceRule::everything(true),
            rule(false, DeviceKind::Char, Some(1), Some(3), "rwm"),
            rule(false, DeviceKind::All, Some(8), None, "w"),
        ];
        let plan = V1Plan::new(&rules).unwrap();
        assert!(plan.default_allow);
        let entries: Vec<String> = plan.exceptions.iter().map(DeviceRule::entry).collect();
        assert_eq!(entries, ["c 1:3 rwm", "c 8:* w", "b 8:* w"]);
        assert!(plan.exceptions.iter().all(|e| !e.allow));
    }

    #[test]
    fn v1_plan_later_rules_take_back_whole_exceptions() {
        let rules = [
            rule(true, DeviceKind::Char, Some(1), Some(3), "rwm"),
            rule(false, DeviceKind::Char, None, None, "m"),
        ];
        let plan = V1Plan::new(&rules).unwrap();
        assert_eq!(plan.exceptions[0].entry(), "c 1:3 rw");
    }

    #[test]
    fn v1_plan_refuses_holes_in_wildcards() {
        let rules = [
            rule(true, DeviceKind::Char, None, None, "rwm"),
            rule(false, DeviceKind::Char, Some(1), Some(3), "rwm"),
        ];
        let err = V1Plan::new(&rules).unwrap_err().to_string();
        assert!(err.contains("deny c 1:3 rwm"), "{err}");
        // ... unless a later rule fills the hole again.
        let mut rules = rules.to_vec();
        rules.push(rule(true, DeviceKind::Char, Some(1), Some(3), "rwm"));
        let plan = V1Plan::new(&rules).unwrap();
        let entries: Vec<String> = plan.exceptions.iter().map(DeviceRule::entry).collect();
        assert_eq!(entries, ["c *:* rwm", "c 1:3 rwm"]);
    }

    #[test]
    fn devices_list() {
        assert_eq!(parse_devices_list("a *:* rwm\n"), None);
        let l = parse_devices_list("c 1:3 rwm\nc 136:* rw\n").unwrap();
        assert_eq!(l[1].entry(), "c 136:* rw");
        assert_eq!(parse_devices_list("").unwrap(), vec![]);
    }
}
