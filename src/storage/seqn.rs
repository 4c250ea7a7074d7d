//! Synapse's `SlabSeqn`: an append-only log in a named database.

use super::db::{Db, Entries, Txn};
use super::slab::{Slab, WriteTxn};
use super::{Result, int64en, int64un};
use crate::msgpack::{self, Value};
use std::ops::Range;

/// A dense log: keys are 8-byte big-endian offsets from 0, values are msgpack items.
#[derive(Clone, Debug)]
pub struct Seqn {
    db: Db,
}

impl Seqn {
    /// Open (or create, on a writable slab) the log stored in database `name`.
    pub fn open(slab: &Slab, name: &str) -> Result<Seqn> {
        Ok(Seqn {
            db: slab.db(name, false)?,
        })
    }

    /// The underlying database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The offset the next append will get (the number of items ever appended).
    pub fn next_offset(&self, txn: &impl Txn) -> Result<u64> {
        Ok(self.last_offset(txn)?.map_or(0, |offs| offs + 1))
    }

    /// Append `item` and return its offset.
    pub fn append(&self, wtxn: &mut WriteTxn<'_>, item: &Value) -> Result<u64> {
        let offs = self.next_offset(wtxn)?;
        self.db.append(wtxn, &int64en(offs), &item.to_bytes())?;
        Ok(offs)
    }

    /// Append every item in order: the range of offsets they got and their encoded size.
    pub fn append_many<'v>(
        &self,
        wtxn: &mut WriteTxn<'_>,
        items: impl IntoIterator<Item = &'v Value>,
    ) -> Result<Appended> {
        let start = self.next_offset(wtxn)?;
        let mut next = start;
        let mut bytes = 0u64;
        for item in items {
            let encoded = item.to_bytes();
            bytes += encoded.len() as u64;
            self.db.append(wtxn, &int64en(next), &encoded)?;
            next += 1;
        }
        Ok(Appended {
            offsets: start..next,
            bytes,
        })
    }

    /// The item at `offs`.
    pub fn get(&self, txn: &impl Txn, offs: u64) -> Result<Option<Value>> {
        self.db.get_value(txn, &int64en(offs))
    }

    /// The last item and its offset.
    pub fn last(&self, txn: &impl Txn) -> Result<Option<(u64, Value)>> {
        match self.db.last(txn)? {
            None => Ok(None),
            Some((key, value)) => decode_item(&self.db, key, value).map(Some),
        }
    }

    /// Items from offset `offs` onwards, in order.
    pub fn iter_from<'t>(&self, txn: &'t impl Txn, offs: u64) -> Result<SeqnIter<'t>> {
        Ok(SeqnIter {
            entries: self.db.iter_from(txn, &int64en(offs))?,
        })
    }

    fn last_offset(&self, txn: &impl Txn) -> Result<Option<u64>> {
        match self.db.last(txn)? {
            None => Ok(None),
            Some((key, _)) => decode_offset(&self.db, key).map(Some),
        }
    }
}

/// What [`Seqn::append_many`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The offsets the items got.
    pub offsets: Range<u64>,
    /// The items' msgpack bytes in all.
    pub bytes: u64,
}

/// `(offset, item)` pairs of a [`Seqn`], borrowed from the transaction.
pub struct SeqnIter<'t> {
    entries: Entries<'t>,
}

impl Iterator for SeqnIter<'_> {
    type Item = Result<(u64, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.entries.next()?;
        Some(entry.and_then(|(key, value)| decode_item(self.entries.db(), key, value)))
    }
}

fn decode_offset(db: &Db, key: &[u8]) -> Result<u64> {
    if key.len() != 8 {
        return Err(db.decode_error(key, "key is not an 8-byte offset".into()));
    }
    Ok(int64un(key))
}

fn decode_item(db: &Db, key: &[u8], value: &[u8]) -> Result<(u64, Value)> {
    let offs = decode_offset(db, key)?;
    let item = msgpack::decode_exact(value).map_err(|e| db.decode_error(key, e.to_string()))?;
    Ok((offs, item))
}
