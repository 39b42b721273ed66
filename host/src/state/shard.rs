//! One shard of keyed state: a flat hash table whose keys and values live in
//! one byte arena, so that holding an entry allocates nothing of its own and
//! copying a whole shard (copy-on-write, for a snapshot) is three `memcpy`s.
//!
//! An entry is a [`Slot`]: where its key and value sit in the arena, the
//! value's length and the room it has to grow in place, the checkpoint
//! epoch in which it last changed, and 32 bits of its hash. An [`Index`]
//! of (hash, slot) words finds an entry by hash; the caller says what
//! equality means (a map state's entry is keyed by the
//! event key and the user key together). A removed slot goes on a free list
//! and its arena bytes become garbage; the arena is compacted in place when
//! garbage passes half of it. Offsets are 32-bit: a shard holds at most 4 GiB
//! (the backend spreads a state over many shards, so that is far beyond
//! what a subtask holds).
//!
//! Besides the table, a shard keeps what its state kind needs:
//! - map state: for each entry its event key's length and hash, and links
//!   into a list of the entries of the same event key, whose head a second
//!   small table finds by event key (so `entries` and `clear` of one key walk
//!   that key's entries, not the shard);
//! - list state: for each list the byte length it had at the last snapshot,
//!   so a checkpoint writes only what was appended since.

use hashbrown::HashTable;

/// No slot (end of a list, or a slot that is not a map entry).
pub(crate) const NONE: u32 = u32::MAX;

/// Where an entry's key and value sit in the arena, and its bookkeeping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// Start of the key bytes; the value follows them.
    pub off: u32,
    /// Key bytes (for a map entry, event key and user key together); [`NONE`] when free.
    pub klen: u32,
    /// Value bytes.
    pub vlen: u32,
    /// Room for the value in place.
    pub vcap: u32,
    /// The snapshot epoch of its last change (0: never tracked).
    pub epoch: u32,
    /// 32 bits of the key's hash.
    pub hash: u32,
}

/// A map entry's event key and its neighbours among that key's entries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MapLink {
    /// Bytes of the event key at the start of the slot's key.
    pub klen: u32,
    /// 32 bits of the event key's hash.
    pub khash: u32,
    pub prev: u32,
    pub next: u32,
}

/// The arena would pass 4 GiB.
#[derive(Debug)]
pub(crate) struct ShardFull;

/// The hash index of a shard's slots: open addressing with linear probing
/// over one array of `(32 bits of hash, slot + 1)` words (0: empty), so
/// that one cache line answers most probes without touching the slots, and
/// deletion shifts the entries after it back (no tombstones). At most
/// three quarters full.
///
/// Large state is bound by memory latency: each lookup misses the cache on
/// the index, the slot and the key. [`Index::touch`] loads an index line
/// ahead, so that the lookups of a whole batch overlap their misses
/// instead of waiting for each in turn.
#[derive(Debug, Clone, Default)]
struct Index {
    words: Vec<u64>,
    len: usize,
    /// log2 of `words.len()` (0 when empty).
    bits: u32,
}

impl Index {
    fn home(&self, hash: u32) -> usize {
        (spread(hash) >> (64 - self.bits)) as usize
    }

    fn len(&self) -> usize {
        self.len
    }

    fn find(&self, hash: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let mask = self.words.len() - 1;
        let mut at = self.home(hash);
        loop {
            let w = self.words[at];
            if w == 0 {
                return None;
            }
            if (w >> 32) as u32 == hash && eq(w as u32 - 1) {
                return Some(w as u32 - 1);
            }
            at = (at + 1) & mask;
        }
    }

    /// Loads the word at `hash`'s home (a plain load whose value is only
    /// looked at for the slot it names: the CPU goes on while it misses);
    /// the slot there if its hash matches.
    fn touch(&self, hash: u32) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let w = std::hint::black_box(self.words[self.home(hash)]);
        ((w >> 32) as u32 == hash && w != 0).then(|| w as u32 - 1)
    }

    fn insert(&mut self, hash: u32, slot: u32) {
        if (self.len + 1) * 4 > self.words.len() * 3 {
            self.grow();
        }
        let mask = self.words.len() - 1;
        let mut at = self.home(hash);
        while self.words[at] != 0 {
            at = (at + 1) & mask;
        }
        self.words[at] = ((hash as u64) << 32) | (slot as u64 + 1);
        self.len += 1;
    }

    fn grow(&mut self) {
        let bits = (self.bits + 1).max(3);
        let old = std::mem::replace(&mut self.words, vec![0; 1 << bits]);
        self.bits = bits;
        let mask = self.words.len() - 1;
        for w in old.into_iter().filter(|&w| w != 0) {
            let mut at = self.home((w >> 32) as u32);
            while self.words[at] != 0 {
                at = (at + 1) & mask;
            }
            self.words[at] = w;
        }
    }

    fn remove(&mut self, hash: u32, slot: u32) {
        if self.len == 0 {
            return;
        }
        let mask = self.words.len() - 1;
        let want = ((hash as u64) << 32) | (slot as u64 + 1);
        let mut hole = self.home(hash);
        loop {
            match self.words[hole] {
                0 => return,
                w if w == want => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        // Shift back every word after the hole that may sit there.
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let w = self.words[at];
            if w == 0 {
                break;
            }
            let home = self.home((w >> 32) as u32);
            // `w` may move to the hole if its home is not cyclically in (hole, at].
            let stays = if hole <= at {
                hole < home && home <= at
            } else {
                hole < home || home <= at
            };
            if !stays {
                self.words[hole] = w;
                hole = at;
            }
        }
        self.words[hole] = 0;
        self.len -= 1;
    }
}

/// Spreads 32 bits of hash over the 64 that hashbrown uses (it takes the
/// bucket from the low bits and a tag from the top seven).
fn spread(h: u32) -> u64 {
    ((h as u64) | ((h as u64) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The entries of one shard.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shard {
    index: Index,
    pub slots: Vec<Slot>,
    free: Vec<u32>,
    pub arena: Vec<u8>,
    garbage: usize,
    /// Map state: one per slot.
    pub links: Vec<MapLink>,
    /// Map state: (head slot, entries) of each event key, by the event key's hash.
    heads: HashTable<(u32, u32)>,
    /// List state: one per slot, the list's byte length at the last snapshot
    /// ([`NONE`]: the whole list is new since).
    pub base: Vec<u32>,
}

impl Shard {
    /// Live entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether slot `i` holds an entry.
    pub fn live(&self, i: u32) -> bool {
        self.slots[i as usize].klen != NONE
    }

    /// The key of slot `i`.
    pub fn key(&self, i: u32) -> &[u8] {
        let s = &self.slots[i as usize];
        &self.arena[s.off as usize..(s.off + s.klen) as usize]
    }

    /// The value of slot `i`.
    pub fn value(&self, i: u32) -> &[u8] {
        let s = &self.slots[i as usize];
        let at = (s.off + s.klen) as usize;
        &self.arena[at..at + s.vlen as usize]
    }

    /// The slot whose key `eq` accepts, among those of hash `hash`.
    pub fn find(&self, hash: u32, mut eq: impl FnMut(&Shard, u32) -> bool) -> Option<u32> {
        self.index.find(hash, |i| eq(self, i))
    }

    /// Loads the index's line for `hash` ahead of a lookup (see
    /// [`Index::touch`]); `deep` also loads the entry it points to first.
    pub fn touch(&self, hash: u32, deep: bool) {
        if let Some(i) = self.index.touch(hash) {
            if deep {
                if let Some(s) = self.slots.get(i as usize) {
                    std::hint::black_box(self.arena.get(s.off as usize).copied());
                }
            }
        }
    }

    /// Whether slot `i` holds exactly `key` (value state), or the map entry
    /// (`key`, `map_key`).
    pub fn holds(&self, i: u32, key: &[u8], map_key: Option<&[u8]>) -> bool {
        match self.slots.get(i as usize) {
            Some(s) if s.klen != NONE => {}
            _ => return false,
        }
        match map_key {
            None => self.key(i) == key,
            Some(mk) => i < self.links.len() as u32 && self.is_entry(i, key, mk),
        }
    }

    /// Whether live map entry `i` is (`key`, `map_key`).
    pub fn is_entry(&self, i: u32, key: &[u8], map_key: &[u8]) -> bool {
        self.links[i as usize].klen as usize == key.len() && {
            let k = self.key(i);
            k.len() == key.len() + map_key.len()
                && &k[..key.len()] == key
                && &k[key.len()..] == map_key
        }
    }

    /// The slot holding exactly `key` (value and list state).
    pub fn find_key(&self, hash: u32, key: &[u8]) -> Option<u32> {
        self.find(hash, |s, i| s.key(i) == key)
    }

    /// Reserves `n` arena bytes at its end; their offset.
    fn grow_arena(&mut self, n: usize) -> Result<u32, ShardFull> {
        if self.garbage > 4096 && self.garbage * 2 > self.arena.len() {
            self.compact();
        }
        let at = self.arena.len();
        if at + n > u32::MAX as usize {
            return Err(ShardFull);
        }
        self.arena.resize(at + n, 0);
        Ok(at as u32)
    }

    /// Rewrites the arena with only live entries (slot numbers stay).
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for s in self.slots.iter_mut().filter(|s| s.klen != NONE) {
            let (from, n) = (s.off as usize, (s.klen + s.vlen) as usize);
            s.off = arena.len() as u32;
            arena.extend_from_slice(&self.arena[from..from + n]);
            arena.resize(arena.len() + (s.vcap - s.vlen) as usize, 0);
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// Adds an entry with key `parts` concatenated and `value` (the caller
    /// knows the key is absent); its slot number.
    pub fn insert(
        &mut self,
        hash: u32,
        parts: [&[u8]; 2],
        value: &[u8],
        epoch: u32,
    ) -> Result<u32, ShardFull> {
        let klen = parts[0].len() + parts[1].len();
        let vcap = value.len().next_multiple_of(8).max(8);
        let off = self.grow_arena(klen + vcap)?;
        let at = off as usize;
        self.arena[at..at + parts[0].len()].copy_from_slice(parts[0]);
        self.arena[at + parts[0].len()..at + klen].copy_from_slice(parts[1]);
        self.arena[at + klen..at + klen + value.len()].copy_from_slice(value);
        let slot = Slot {
            off,
            klen: klen as u32,
            vlen: value.len() as u32,
            vcap: vcap as u32,
            epoch,
            hash,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(hash, i);
        Ok(i)
    }

    /// Makes room for `vlen` value bytes in slot `i`, moving the entry to
    /// the arena's end when it has not that room (with half as much again).
    fn reserve(&mut self, i: u32, vlen: usize) -> Result<(), ShardFull> {
        let s = self.slots[i as usize];
        if vlen <= s.vcap as usize {
            return Ok(());
        }
        let vcap = (vlen + vlen / 2).next_multiple_of(8);
        let off = self.grow_arena(s.klen as usize + vcap)?;
        // `grow_arena` may have compacted: read the slot again.
        let s = self.slots[i as usize];
        let n = (s.klen + s.vlen) as usize;
        self.arena
            .copy_within(s.off as usize..s.off as usize + n, off as usize);
        self.garbage += (s.klen + s.vcap) as usize;
        let slot = &mut self.slots[i as usize];
        slot.off = off;
        slot.vcap = vcap as u32;
        Ok(())
    }

    /// Replaces the value of slot `i`.
    pub fn set_value(&mut self, i: u32, value: &[u8]) -> Result<(), ShardFull> {
        self.reserve(i, value.len())?;
        let s = &mut self.slots[i as usize];
        s.vlen = value.len() as u32;
        let at = (s.off + s.klen) as usize;
        self.arena[at..at + value.len()].copy_from_slice(value);
        Ok(())
    }

    /// Appends `bytes` to the value of slot `i`.
    pub fn append_value(&mut self, i: u32, bytes: &[&[u8]]) -> Result<(), ShardFull> {
        let n: usize = bytes.iter().map(|b| b.len()).sum();
        let old = self.slots[i as usize].vlen as usize;
        self.reserve(i, old + n)?;
        let s = &mut self.slots[i as usize];
        let mut at = (s.off + s.klen) as usize + old;
        s.vlen = (old + n) as u32;
        for b in bytes {
            self.arena[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        Ok(())
    }

    /// Removes the entry of slot `i` (map links are the caller's).
    pub fn remove(&mut self, i: u32) {
        let s = self.slots[i as usize];
        self.index.remove(s.hash, i);
        self.garbage += (s.klen + s.vcap) as usize;
        self.slots[i as usize].klen = NONE;
        self.free.push(i);
    }

    /// Every live slot.
    pub fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.slots.len() as u32).filter(|&i| self.live(i))
    }

    // ---- map state: the entries of each event key ----

    /// The head slot and entry count of event key `key` (hash `khash`).
    pub fn head(&self, khash: u32, key: &[u8]) -> Option<(u32, u32)> {
        self.heads
            .find(spread(khash), |&(h, _)| self.owner(h) == key)
            .copied()
    }

    /// The event key of map entry `i`.
    pub fn owner(&self, i: u32) -> &[u8] {
        &self.key(i)[..self.links[i as usize].klen as usize]
    }

    /// The user key of map entry `i`.
    pub fn user_key(&self, i: u32) -> &[u8] {
        &self.key(i)[self.links[i as usize].klen as usize..]
    }

    /// Links new map entry `i` (event key of `klen` bytes, hash `khash`)
    /// at the head of its key's entries; whether the key is new.
    pub fn link(&mut self, i: u32, klen: u32, khash: u32) -> bool {
        if self.links.len() < self.slots.len() {
            let fill = MapLink {
                klen: 0,
                khash: 0,
                prev: NONE,
                next: NONE,
            };
            self.links.resize(self.slots.len(), fill);
        }
        let (slots, links, arena) = (&self.slots, &self.links, &self.arena);
        let me = &slots[i as usize];
        let key = &arena[me.off as usize..(me.off + klen) as usize];
        let owner = |h: u32| {
            let s = &slots[h as usize];
            &arena[s.off as usize..(s.off + links[h as usize].klen) as usize]
        };
        let found = self
            .heads
            .find_mut(spread(khash), |&(h, _)| owner(h) == key);
        let (next, new) = match found {
            Some(head) => {
                let old = head.0;
                *head = (i, head.1 + 1);
                (old, false)
            }
            None => (NONE, true),
        };
        if new {
            let links = &self.links;
            self.heads.insert_unique(spread(khash), (i, 1), |&(h, _)| {
                spread(links[h as usize].khash)
            });
        } else {
            self.links[next as usize].prev = i;
        }
        self.links[i as usize] = MapLink {
            klen,
            khash,
            prev: NONE,
            next,
        };
        new
    }

    /// Unlinks map entry `i` from its key's entries (before removing it);
    /// whether it was the key's last.
    pub fn unlink(&mut self, i: u32) -> bool {
        let MapLink {
            khash, prev, next, ..
        } = self.links[i as usize];
        if prev != NONE {
            self.links[prev as usize].next = next;
        }
        if next != NONE {
            self.links[next as usize].prev = prev;
        }
        let (slots, links, arena) = (&self.slots, &self.links, &self.arena);
        let owner = |h: u32| {
            let s = &slots[h as usize];
            &arena[s.off as usize..(s.off + links[h as usize].klen) as usize]
        };
        let me = owner(i);
        let Ok(mut head) = self
            .heads
            .find_entry(spread(khash), |&(h, _)| h == i || owner(h) == me)
        else {
            return false;
        };
        let (h, n) = *head.get();
        if n <= 1 {
            head.remove();
            return true;
        }
        *head.get_mut() = (if h == i { next } else { h }, n - 1);
        false
    }

    /// The map entries of the key whose list starts at `head`.
    pub fn chain(&self, head: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(head).filter(|&h| h != NONE), move |&i| {
            Some(self.links[i as usize].next).filter(|&n| n != NONE)
        })
    }

    /// Every (head, entries) of a map state's event keys.
    pub fn heads(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.heads.iter().copied()
    }

    // ---- list state ----

    /// Records the list of slot `i` as it is at the start of an epoch
    /// (`whole`: rewritten or new, so all of it is new).
    pub fn set_base(&mut self, i: u32, whole: bool) {
        if self.base.len() < self.slots.len() {
            self.base.resize(self.slots.len(), NONE);
        }
        self.base[i as usize] = if whole {
            NONE
        } else {
            self.slots[i as usize].vlen
        };
    }

    /// The list of slot `i`'s byte length at the last snapshot ([`NONE`]: new).
    pub fn base_of(&self, i: u32) -> u32 {
        self.base.get(i as usize).copied().unwrap_or(NONE)
    }
}

/// The elements of a list state's value, stored each as its length (u32,
/// little-endian) then its bytes.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let len = u32::from_le_bytes(value.get(at..at + 4)?.try_into().ok()?) as usize;
        let item = value.get(at + 4..at + 4 + len)?;
        at += 4 + len;
        Some(item)
    })
}
