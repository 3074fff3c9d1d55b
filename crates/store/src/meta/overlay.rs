//! A write set over a transaction: a mutation's writes are buffered here and reach the
//! batch transaction only if the mutation succeeds, so a failed mutation leaves no trace
//! while its batch-mates still commit.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Entry, KvRead, KvWrite, Table};
use crate::error::StoreError;

pub(crate) struct Overlay<'a> {
    base: &'a mut dyn KvWrite,
    /// `None` marks a deletion. Ordered, so a commit writes in the same order every
    /// time (the simulation replays runs exactly).
    writes: BTreeMap<Table, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a mut dyn KvWrite) -> Self {
        Overlay {
            base,
            writes: BTreeMap::new(),
        }
    }

    /// Apply the buffered writes to the underlying transaction.
    pub fn apply(self) -> Result<(), StoreError> {
        for (table, writes) in self.writes {
            for (k, v) in writes {
                match v {
                    Some(v) => self.base.put(table, &k, &v)?,
                    None => {
                        self.base.delete(table, &k)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn range<'s>(
        &'s self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'s Vec<u8>, &'s Option<Vec<u8>>)> + 's {
        let bounds = (
            Bound::Included(from.to_vec()),
            match to {
                Some(t) => Bound::Excluded(t.to_vec()),
                None => Bound::Unbounded,
            },
        );
        // BTreeMap::range panics on a reversed range; such a range is simply empty.
        let reversed = to.is_some_and(|t| from > t);
        self.writes
            .get(&table)
            .filter(|_| !reversed)
            .into_iter()
            .flat_map(move |w| w.range(bounds.clone()))
    }
}

impl KvRead for Overlay<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(&table).and_then(|w| w.get(key)) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(table, key),
        }
    }

    fn scan(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        // Each buffered deletion hides at most one stored entry, so fetching that many
        // more keeps the merged result complete up to `limit`.
        let deletions = self
            .range(table, from, to)
            .filter(|(_, v)| v.is_none())
            .count();
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .base
            .scan(table, from, to, limit.saturating_add(deletions))?
            .into_iter()
            .collect();
        for (k, v) in self.range(table, from, to) {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    fn count(&self, table: Table) -> Result<u64, StoreError> {
        let mut n = self.base.count(table)?;
        if let Some(w) = self.writes.get(&table) {
            for (k, v) in w {
                let stored = self.base.get(table, k)?.is_some();
                match (stored, v.is_some()) {
                    (false, true) => n += 1,
                    (true, false) => n = n.saturating_sub(1),
                    _ => {}
                }
            }
        }
        Ok(n)
    }
}

impl KvWrite for Overlay<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.writes
            .entry(table)
            .or_default()
            .insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        let existed = self.get(table, key)?.is_some();
        self.writes
            .entry(table)
            .or_default()
            .insert(key.to_vec(), None);
        Ok(existed)
    }
}
