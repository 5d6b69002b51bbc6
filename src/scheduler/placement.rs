//! Which host a job may run on, and with how many slots each host runs
//! jobs (pure data: whether a host answers is the runner's to say).
//!
//! `local` has NUM_WORKERS slots, each PODMAN_HOSTS entry its own; a
//! backend runs on its DRIVER_HOST_n hosts, preferred first (`local` when
//! unset).

use std::collections::HashMap;

use crate::config::{BackendConfig, HostName, PodmanHost};
use crate::model::BackendName;

/// Hosts with their slot counts, and each backend's eligible hosts.
#[derive(Debug, Clone)]
pub struct Placement {
    /// `local` first.
    hosts: Vec<(HostName, usize)>,
    /// Backend name (lower case) to its hosts, preferred first.
    backend_hosts: HashMap<String, Vec<HostName>>,
}

impl Placement {
    /// Every backend on this host, with `workers` slots.
    pub fn local(workers: usize) -> Self {
        Self {
            hosts: vec![(HostName::local(), workers.max(1))],
            backend_hosts: HashMap::new(),
        }
    }

    pub fn new(workers: usize, hosts: &[PodmanHost], backends: &[BackendConfig]) -> Self {
        let mut placement = Self::local(workers);
        placement
            .hosts
            .extend(hosts.iter().map(|h| (h.name.clone(), h.slots)));
        placement.backend_hosts = backends
            .iter()
            .map(|b| (b.name.as_str().to_lowercase(), b.hosts.clone()))
            .collect();
        placement
    }

    /// The hosts and their slot counts, `local` first.
    pub fn hosts(&self) -> &[(HostName, usize)] {
        &self.hosts
    }

    /// Where `backend` may run, preferred first.
    pub fn hosts_for(&self, backend: &BackendName) -> Vec<HostName> {
        self.backend_hosts
            .get(&backend.as_str().to_lowercase())
            .cloned()
            .unwrap_or_else(|| vec![HostName::local()])
    }
}

/// What to do with a waiting job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Run it on this host.
    Run(HostName),
    /// A host that answers is busy: wait for a slot.
    Wait,
    /// None of its hosts answers: end it (nothing stays pending).
    NoHost(Vec<HostName>),
}

/// The first of `candidates` (minus `avoid`) that answers and has a free
/// slot.
pub fn choose(
    candidates: &[HostName],
    avoid: Option<&HostName>,
    has_free_slot: impl Fn(&HostName) -> bool,
    is_reachable: impl Fn(&HostName) -> bool,
) -> Choice {
    let usable: Vec<&HostName> = candidates.iter().filter(|h| Some(*h) != avoid).collect();
    let reachable: Vec<&&HostName> = usable.iter().filter(|h| is_reachable(h)).collect();
    if reachable.is_empty() {
        return Choice::NoHost(usable.into_iter().cloned().collect());
    }
    reachable
        .into_iter()
        .find(|h| has_free_slot(h))
        .map_or(Choice::Wait, |h| Choice::Run((*h).clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<HostName> {
        list.iter().map(|n| HostName::new(n).unwrap()).collect()
    }

    #[test]
    fn the_first_answering_host_with_a_free_slot_wins() {
        let hosts = names(&["lab", "local"]);
        let lab = HostName::new("lab").unwrap();
        let all = |_: &HostName| true;
        assert_eq!(choose(&hosts, None, all, all), Choice::Run(lab.clone()));
        let lab_busy = |h: &HostName| h != &lab;
        assert_eq!(
            choose(&hosts, None, lab_busy, all),
            Choice::Run(HostName::local())
        );
        let lab_down = |h: &HostName| h != &lab;
        assert_eq!(
            choose(&hosts, None, all, lab_down),
            Choice::Run(HostName::local())
        );
        assert_eq!(choose(&hosts, None, |_| false, all), Choice::Wait);
    }

    #[test]
    fn a_retry_avoids_the_lost_host_and_ends_when_nothing_answers() {
        let lab = HostName::new("lab").unwrap();
        let all = |_: &HostName| true;
        assert_eq!(
            choose(&names(&["lab", "local"]), Some(&lab), all, all),
            Choice::Run(HostName::local())
        );
        assert_eq!(
            choose(&names(&["lab"]), None, all, |_| false),
            Choice::NoHost(vec![lab])
        );
    }
}
