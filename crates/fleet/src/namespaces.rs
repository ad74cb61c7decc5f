//! What the fleet sets up around the runtime for a container's user
//! namespace and network, in the order a start needs them, and what `new`,
//! `rm` and an `apply` update do to the ids and addresses a container
//! holds:
//!
//! 1. `new` records the container's id range (`--userns private`) and
//!    gives its upper layer's directories shifted owners;
//! 2. a start makes the user and network namespaces ([`Namespaces`]),
//!    then (after the root is mounted through the user namespace's
//!    idmapping) connects a bridge container: a lease, a veth pair;
//! 3. `rm` frees the range and the lease.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::spec::{ContainerSpec, Network, UserNs};
use crate::userns::IdRange;
use crate::{bridge, ipam, netns, userns, Fleet, FleetError};

/// The namespaces made for one start, by path.
#[derive(Debug, Default)]
pub(crate) struct Namespaces {
    /// The network namespace (`none`, `bridge`).
    pub net: Option<PathBuf>,
    /// The user namespace and its range (`private`).
    pub user: Option<(PathBuf, IdRange)>,
}

impl Namespaces {
    /// The user namespace's nsfs file.
    pub(crate) fn user_path(&self) -> Option<&Path> {
        self.user.as_ref().map(|(p, _)| p.as_path())
    }
}

impl Fleet {
    /// At `new`, after the record: the id range of a private container,
    /// and the owners of the directories of its upper layer. On failure
    /// the range is freed again.
    pub(crate) fn own_layers(&self, spec: &ContainerSpec, dir: &Path) -> Result<(), FleetError> {
        if spec.userns != UserNs::Private {
            return Ok(());
        }
        let range = userns::allocate(self.db.conn(), &spec.name)?;
        userns::own_layers(&dir.join("upper"), spec.base.lower(), &spec.hide, range).inspect_err(
            |_| {
                let _ = userns::release(self.db.conn(), &spec.name);
            },
        )
    }

    /// At an update from `old` to `new` (after its layers were made): a
    /// change of user namespace moves the owners of the upper layer's
    /// files to the new mapping; new hidden paths get shifted owners.
    pub(crate) fn change_ids(
        &self,
        old: &ContainerSpec,
        new: &ContainerSpec,
        dir: &Path,
    ) -> Result<(), FleetError> {
        let conn = self.db.conn();
        let from = match old.userns {
            UserNs::Private => userns::held(conn, &old.name)?,
            UserNs::Host => None,
        };
        let to = match new.userns {
            UserNs::Private => Some(userns::allocate(conn, &new.name)?),
            UserNs::Host => None,
        };
        let upper = dir.join("upper");
        userns::shift_layer(&upper, from, to)?;
        match to {
            Some(range) => userns::own_layers(&upper, new.base.lower(), &new.hide, range),
            None => userns::release(conn, &new.name),
        }
    }

    /// At a start, before the root is mounted: the user namespace (with
    /// the range recorded at `new`) and the network namespace (inside the
    /// user namespace) that `spec` asks for.
    pub(crate) fn make_namespaces(
        &self,
        spec: &ContainerSpec,
        dir: &Path,
    ) -> Result<Namespaces, FleetError> {
        let user = match spec.userns {
            UserNs::Private => {
                // Recorded at `new`: read without taking the write lock.
                let range = match userns::held(self.db.conn(), &spec.name)? {
                    Some(r) => r,
                    None => userns::allocate(self.db.conn(), &spec.name)?,
                };
                searchable(&spec.name, dir, range)?;
                Some((dir.join("userns"), range))
            }
            UserNs::Host => None,
        };
        let net = match spec.network {
            Network::None | Network::Bridge => Some(dir.join("netns")),
            Network::Host => None,
        };
        netns::create(
            net.as_deref(),
            user.as_ref().map(|(p, r)| (p.as_path(), *r)),
        )?;
        Ok(Namespaces { net, user })
    }

    /// At a start, once the namespaces exist: a bridge container's lease
    /// and veth pair.
    pub(crate) fn connect(
        &self,
        spec: &ContainerSpec,
        dir: &Path,
        ns: &Namespaces,
    ) -> Result<(), FleetError> {
        let (Network::Bridge, Some(net)) = (spec.network, &ns.net) else {
            return Ok(());
        };
        let addr = ipam::lease(self.db.conn(), &spec.name, self.bridge.subnet())?;
        bridge::attach(&self.bridge, dir, net, addr)
    }

    /// At `rm`: the range and the lease go back.
    pub(crate) fn free_ids(&self, name: &str) -> Result<(), FleetError> {
        ipam::release(self.db.conn(), name)?;
        userns::release(self.db.conn(), name)
    }

    /// For `ls`: a bridge container's address, a private one's range.
    pub(crate) fn held(
        &self,
        spec: &ContainerSpec,
    ) -> Result<(Option<Ipv4Addr>, Option<IdRange>), FleetError> {
        let addr = match spec.network {
            Network::Bridge => ipam::held(self.db.conn(), &spec.name)?,
            _ => None,
        };
        let ids = match spec.userns {
            UserNs::Private => userns::held(self.db.conn(), &spec.name)?,
            UserNs::Host => None,
        };
        Ok((addr, ids))
    }
}

/// The runtime's init reaches the container's root by path as the
/// container's root, a host uid with no rights over the host's files:
/// every directory above it must be searchable by others. Said before
/// anything is made, naming the directory.
fn searchable(name: &str, dir: &Path, range: IdRange) -> Result<(), FleetError> {
    use std::os::unix::fs::MetadataExt;
    for d in dir.ancestors() {
        let Ok(m) = std::fs::metadata(d) else {
            continue;
        };
        if m.mode() & 0o001 == 0 && range.to_container(m.uid()).is_none() {
            return Err(FleetError::State {
                name: name.into(),
                why: format!(
                    "cannot start: {} (mode {:o}) is not searchable by the container's root (host uid {}); make it 0711 or use --userns host",
                    d.display(),
                    m.mode() & 0o7777,
                    range.host_id
                ),
            });
        }
    }
    Ok(())
}
