//! The owners this replica knows, kept in two generations: a full cache forgets its
//! older half instead of everything at once, so the latest ids stay known here, and
//! the forgotten half is dropped outside the lock.

use std::collections::HashMap;
use std::mem;

use super::Owner;

pub(super) struct OwnerCache {
    /// Owners per generation.
    generation: usize,
    newer: HashMap<String, Owner>,
    older: HashMap<String, Owner>,
}

/// A generation the cache has let go of, to be dropped once its lock is released.
pub(super) type Retired = HashMap<String, Owner>;

impl OwnerCache {
    /// A cache of at most `max` owners.
    pub fn new(max: usize) -> Self {
        Self {
            generation: (max / 2).max(1),
            newer: HashMap::new(),
            older: HashMap::new(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Owner> {
        self.newer.get(id).or_else(|| self.older.get(id))
    }

    /// Remembers `owner` for `id`; returns the generation this retires, if any.
    #[must_use]
    pub fn insert(&mut self, id: &str, owner: &Owner) -> Option<Retired> {
        let retired = (self.newer.len() >= self.generation && !self.newer.contains_key(id))
            .then(|| {
                let newer = mem::replace(&mut self.newer, HashMap::with_capacity(self.generation));
                mem::replace(&mut self.older, newer)
            })
            .filter(|r| !r.is_empty());
        self.newer.insert(id.to_owned(), owner.clone());
        retired
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_full_cache_forgets_its_older_half_only() {
        let owner = Owner {
            project: Uuid::now_v7(),
            model: Arc::from("openai.gpt-oss-20b"),
        };
        let mut cache = OwnerCache::new(10);
        let mut retired = Vec::new();
        for i in 0..23 {
            retired.extend(cache.insert(&format!("resp_{i}"), &owner));
            let held = cache.newer.len() + cache.older.len();
            assert!(held <= 10, "{held} after {i}");
        }
        // Generations of five: 0–4, 5–9 and 10–14 were let go; 15–19 and 20–22 are
        // known.
        assert_eq!(
            retired.iter().map(HashMap::len).collect::<Vec<_>>(),
            [5, 5, 5]
        );
        assert!(retired[0].contains_key("resp_0") && retired[2].contains_key("resp_14"));
        for i in 0..23 {
            assert_eq!(
                cache.get(&format!("resp_{i}")).is_some(),
                i >= 15,
                "resp_{i}"
            );
        }
        // Remembering a known id again retires nothing.
        assert!(cache.insert("resp_22", &owner).is_none());
    }
}
