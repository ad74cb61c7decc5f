//! `plinth apply MANIFEST`: a TOML manifest of containers converges the
//! host. A `[defaults]` table and `[[container]]` entries; every option of
//! `plinth new` is a field; `count = N` with `{n}` in the name makes N
//! containers. Containers the manifest made are recorded as its own, so a
//! later apply removes only those it no longer lists.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::{
    parse_size, Base, Bind, ContainerSpec, HealthCheck, Network, Restart, User, UserNs,
};
use crate::{Fleet, FleetError};

/// The fields of one container (or of `[defaults]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    name: Option<String>,
    count: Option<u32>,
    base: Option<String>,
    command: Option<Vec<String>>,
    hide: Option<Vec<PathBuf>>,
    bind: Option<Vec<String>>,
    env: Option<Vec<String>>,
    workdir: Option<PathBuf>,
    hostname: Option<String>,
    network: Option<String>,
    memory: Option<String>,
    cpus: Option<f64>,
    pids: Option<i64>,
    restart: Option<String>,
    health: Option<String>,
    health_interval: Option<u64>,
    userns: Option<String>,
    user: Option<String>,
}

impl Fields {
    fn or(self, d: &Fields) -> Fields {
        Fields {
            name: self.name,
            count: self.count,
            base: self.base.or_else(|| d.base.clone()),
            command: self.command.or_else(|| d.command.clone()),
            hide: self.hide.or_else(|| d.hide.clone()),
            bind: self.bind.or_else(|| d.bind.clone()),
            env: self.env.or_else(|| d.env.clone()),
            workdir: self.workdir.or_else(|| d.workdir.clone()),
            hostname: self.hostname.or_else(|| d.hostname.clone()),
            network: self.network.or_else(|| d.network.clone()),
            memory: self.memory.or_else(|| d.memory.clone()),
            cpus: self.cpus.or(d.cpus),
            pids: self.pids.or(d.pids),
            restart: self.restart.or_else(|| d.restart.clone()),
            health: self.health.or_else(|| d.health.clone()),
            health_interval: self.health_interval.or(d.health_interval),
            userns: self.userns.or_else(|| d.userns.clone()),
            user: self.user.or_else(|| d.user.clone()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Fields,
    #[serde(default)]
    container: Vec<Fields>,
}

/// A parsed manifest: the containers it wants, by name.
#[derive(Debug)]
pub struct Manifest {
    /// Its canonical path (the owner recorded on what it makes).
    pub path: PathBuf,
    /// The wanted containers, by name.
    pub containers: BTreeMap<String, ContainerSpec>,
}

/// What `apply` does to one container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Made and started.
    Create,
    /// Its spec changed: stopped, changed, started.
    Update,
    /// Unchanged but not running: started.
    Start,
    /// Owned by the manifest and no longer listed: removed.
    Remove,
    /// Nothing to do.
    Unchanged,
}

/// The plan of an apply, in the order it is carried out.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// (action, container name).
    pub steps: Vec<(Action, String)>,
}

impl Plan {
    /// How many steps of this action.
    pub fn count(&self, a: Action) -> usize {
        self.steps.iter().filter(|(x, _)| *x == a).count()
    }
}

impl Manifest {
    /// Reads and validates `path`; errors name the file and the entry.
    pub fn read(path: &Path) -> Result<Manifest, FleetError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(crate::io(shown.clone()))?;
        let canonical = std::fs::canonicalize(path).map_err(crate::io(shown.clone()))?;
        Manifest::parse(&text, canonical)
    }

    /// Parses manifest `text` read from `path`.
    pub fn parse(text: &str, path: PathBuf) -> Result<Manifest, FleetError> {
        let shown = path.display().to_string();
        let bad = |what: String| FleetError::Invalid(format!("{shown}: {what}"));
        let file: File = toml::from_str(text)
            .map_err(|e| bad(e.to_string().lines().collect::<Vec<_>>().join(" ")))?;
        if file.defaults.name.is_some() || file.defaults.count.is_some() {
            return Err(bad("[defaults] cannot have name or count".into()));
        }
        let mut containers = BTreeMap::new();
        for (i, entry) in file.container.into_iter().enumerate() {
            let at = |what: String| bad(format!("container[{i}]: {what}"));
            let f = entry.or(&file.defaults);
            let name = f.name.clone().ok_or_else(|| at("no name".into()))?;
            let count = f.count.unwrap_or(1);
            if count == 0 || count > 10_000 {
                return Err(at(format!("count {count}: must be 1 to 10000")));
            }
            if count > 1 && !name.contains("{n}") {
                return Err(at(format!(
                    "count {count} needs {{n}} in the name {name:?}"
                )));
            }
            for n in 1..=count {
                let cname = name.replace("{n}", &n.to_string());
                let spec = to_spec(&cname, &f).map_err(|e| at(e.to_string()))?;
                if containers.insert(cname.clone(), spec).is_some() {
                    return Err(at(format!("{cname}: listed twice")));
                }
            }
        }
        Ok(Manifest { path, containers })
    }
}

fn to_spec(name: &str, f: &Fields) -> Result<ContainerSpec, FleetError> {
    let base = Base::parse(f.base.as_deref().unwrap_or("host"))?;
    let command = f.command.clone().unwrap_or_default();
    let mut s = ContainerSpec::new(name, base, command)?;
    if let Some(h) = &f.hide {
        s.hide = h.clone();
    }
    if let Some(b) = &f.bind {
        s.binds = b.iter().map(|b| Bind::parse(b)).collect::<Result<_, _>>()?;
    }
    if let Some(e) = &f.env {
        s.env.extend(e.iter().cloned());
    }
    if let Some(w) = &f.workdir {
        s.workdir = w.clone();
    }
    if let Some(h) = &f.hostname {
        s.hostname = h.replace("{name}", name);
    }
    s.network = Network::parse(f.network.as_deref().unwrap_or("none"))?;
    if let Some(u) = &f.userns {
        s.userns = UserNs::parse(u)?;
    }
    s.user = f.user.as_deref().map(User::parse).transpose()?;
    s.memory = f.memory.as_deref().map(parse_size).transpose()?;
    s.cpus = f.cpus;
    s.pids = f.pids;
    if let Some(r) = &f.restart {
        s.restart = Restart::parse(r)?;
    }
    s.health = f.health.as_ref().map(|command| HealthCheck {
        command: command.clone(),
        interval: f.health_interval.unwrap_or(30),
    });
    s.validate()?;
    Ok(s)
}

impl Fleet {
    /// What applying `m` would do.
    pub fn plan(&self, m: &Manifest) -> Result<Plan, FleetError> {
        let owner = m.path.to_string_lossy().to_string();
        let mut plan = Plan::default();
        let existing = self.db.all()?;
        let mut seen = HashSet::new();
        for rec in &existing {
            let name = &rec.spec.name;
            seen.insert(name.clone());
            let owned = self.db.owner(name)?.as_deref() == Some(owner.as_str());
            let want = m
                .containers
                .get(name)
                .map(|w| self.resolve(w.clone()))
                .transpose()?;
            match want.as_ref() {
                Some(_) if !owned => {
                    return Err(FleetError::Exists(format!(
                        "{name} (made outside {}; remove it or rename the entry)",
                        m.path.display()
                    )))
                }
                Some(want) if *want != rec.spec => plan.steps.push((Action::Update, name.clone())),
                Some(_) if self.live(rec).0 != "running" => {
                    plan.steps.push((Action::Start, name.clone()))
                }
                Some(_) => plan.steps.push((Action::Unchanged, name.clone())),
                None if owned => plan.steps.push((Action::Remove, name.clone())),
                None => {}
            }
        }
        for name in m.containers.keys() {
            if !seen.contains(name) {
                plan.steps.push((Action::Create, name.clone()));
            }
        }
        plan.steps.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        Ok(plan)
    }

    /// Carries out `plan` for `m`, calling `report` after each step; stops
    /// at the first failure.
    pub fn apply(
        &self,
        m: &Manifest,
        plan: &Plan,
        report: &mut dyn FnMut(Action, &str),
    ) -> Result<(), FleetError> {
        let owner = m.path.to_string_lossy().to_string();
        let named = |a: Action| -> Vec<String> {
            plan.steps
                .iter()
                .filter(|(x, _)| *x == a)
                .map(|(_, n)| n.clone())
                .collect()
        };
        let (create, update, remove) = (
            named(Action::Create),
            named(Action::Update),
            named(Action::Remove),
        );
        self.remove_many(&remove, true)?;
        for name in &remove {
            report(Action::Remove, name);
        }
        for name in named(Action::Unchanged) {
            report(Action::Unchanged, &name);
        }
        self.stop_many(&update, Duration::from_secs(10))?;
        for name in &update {
            let spec = m.containers[name].clone();
            crate::bundle::make_layers(&self.dir(name), &spec)?;
            self.change_ids(&self.record(name)?.spec, &spec, &self.dir(name))?;
            self.db.set_spec(&spec)?;
        }
        for name in &create {
            self.create(m.containers[name].clone())?;
            self.db.set_owner(name, Some(&owner))?;
        }
        let mut to_start = create;
        to_start.extend(update);
        to_start.extend(named(Action::Start));
        let actions: std::collections::HashMap<&str, Action> =
            plan.steps.iter().map(|(a, n)| (n.as_str(), *a)).collect();
        // The supervisor runs a few `plinth run` processes at once.
        self.start_many(&to_start, &mut |name, r| {
            if r.is_ok() {
                report(actions[name], name);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, FleetError> {
        Manifest::parse(text, PathBuf::from("/etc/plinth/web.toml"))
    }

    #[test]
    fn counts_defaults_and_errors() {
        let m = parse(
            r#"
            [defaults]
            base = "host"
            network = "none"
            restart = "always"

            [[container]]
            name = "web-{n}"
            count = 3
            command = ["/bin/busybox", "httpd", "-f"]

            [[container]]
            name = "db"
            network = "host"
            command = ["/bin/sleep", "1"]
            "#,
        )
        .unwrap();
        assert_eq!(
            m.containers.keys().collect::<Vec<_>>(),
            ["db", "web-1", "web-2", "web-3"]
        );
        assert_eq!(m.containers["web-2"].restart, Restart::Always);
        assert_eq!(m.containers["db"].network, Network::Host);
        for (text, msg) in [
            ("[[container]]\nname = \"a-{n}\"\ncount = 2\n", "no command"),
            ("[[container]]\nname = \"a\"\ncount = 2\ncommand = [\"x\"]\n", "needs {n}"),
            ("[[container]]\nname = \"a\"\ncommand = [\"x\"]\ncolour = 1\n", "unknown field"),
            ("[[container]]\nname = \"a\"\ncommand = [\"x\"]\n[[container]]\nname = \"a\"\ncommand = [\"x\"]\n", "listed twice"),
            ("[defaults]\nname = \"x\"\n", "cannot have name"),
            ("[[container]\n", "/etc/plinth/web.toml"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(msg), "{text:?}: {e}");
            assert!(e.starts_with("/etc/plinth/web.toml: "), "{e}");
        }
    }
}
