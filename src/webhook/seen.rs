//! A bounded memory of delivery ids, so a redelivery (GitHub's "Redeliver"
//! button, a smee reconnect replaying its backlog) does not queue the same
//! work twice. Oldest ids are forgotten first; memory stays bounded however
//! long the service runs.

use std::collections::{HashSet, VecDeque};

#[derive(Debug)]
pub(crate) struct SeenDeliveries {
    capacity: usize,
    ids: HashSet<String>,
    /// Insertion order, to know which id to forget when full.
    order: VecDeque<String>,
}

impl SeenDeliveries {
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a dedup memory must hold at least one id");
        Self {
            capacity,
            ids: HashSet::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
        }
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Remembers `id`, forgetting the oldest id when full.
    pub(crate) fn remember(&mut self, id: &str) {
        if self.ids.contains(id) {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        self.ids.insert(id.to_string());
        self.order.push_back(id.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_ids_until_pushed_out_by_newer_ones() {
        let mut seen = SeenDeliveries::new(2);
        seen.remember("a");
        seen.remember("b");
        seen.remember("a");
        assert!(seen.contains("a") && seen.contains("b"));
        seen.remember("c");
        assert!(!seen.contains("a"), "the oldest id is forgotten first");
        assert!(seen.contains("b") && seen.contains("c"));
        assert_eq!(seen.order.len(), 2);
        assert_eq!(seen.ids.len(), 2);
    }
}
