//! Finding where a store's write-ahead log is damaged, once RocksDB has refused it.
//!
//! Why: every store opens with RocksDB's `TolerateCorruptedTailRecords` recovery, which
//! accepts a log whose last record was cut short (a process killed in the middle of a
//! write) and refuses any other damage with a bare `Corruption: checksum mismatch`. That
//! status names neither the file nor the place, and says nothing of what lies after it.
//! An operator needs all three: which file, where, and how many writes a recovery to the
//! last consistent point would drop. This module reads the log files the way RocksDB's
//! log reader does (its documented format: 32 KiB blocks of records, each with a masked
//! CRC-32C over its type and payload) and reports the first record that fails.
//!
//! It decides nothing: RocksDB alone decides whether a log can be replayed. This only
//! runs after RocksDB refused a store, to describe the damage.

use std::path::{Path, PathBuf};

/// RocksDB's log block: no physical record crosses a block boundary.
const BLOCK_SIZE: usize = 32 * 1024;
/// Checksum (4), length (2), type (1).
const HEADER_SIZE: usize = 7;
/// The header of a recyclable record adds the log number (4).
const RECYCLABLE_HEADER_SIZE: usize = 11;
/// Padding, or space RocksDB preallocated and has not written yet.
const ZERO_TYPE: u8 = 0;
/// A whole logical record (one write batch) in one physical record.
const FULL_TYPE: u8 = 1;
/// The first fragment of a logical record that spans blocks.
const FIRST_TYPE: u8 = 2;
/// Recyclable variants of the full and first types.
const RECYCLABLE_FULL_TYPE: u8 = 5;
const RECYCLABLE_FIRST_TYPE: u8 = 6;

/// Where a store's write-ahead log is damaged, and what lies after the damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDamage {
    /// The damaged log file.
    pub file: PathBuf,
    /// Byte offset of the first record that fails, within that file.
    pub offset: u64,
    /// What is wrong with it.
    pub detail: String,
    /// Writes (RocksDB write batches) recorded after the damage, in this file and in
    /// every later log file: what a recovery to the last consistent write drops.
    pub writes_after: u64,
    /// Bytes of log from the damage to the end of the last log file.
    pub bytes_after: u64,
}

impl std::fmt::Display for LogDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "write-ahead log {} is damaged at byte {} ({}); {} later write(s), {} bytes of log, follow the damage",
            self.file.display(),
            self.offset,
            self.detail,
            self.writes_after,
            self.bytes_after
        )
    }
}

/// The first damaged record among the log files of the store at `store_dir`, in the
/// order RocksDB replays them; `None` when every record reads back whole (a record cut
/// short at the end of a file is a torn write, not damage).
pub fn find_log_damage(store_dir: &Path) -> Option<LogDamage> {
    let logs = log_files(store_dir);
    for (index, file) in logs.iter().enumerate() {
        let bytes = std::fs::read(file).ok()?;
        let Some((offset, detail)) = first_damaged_record(&bytes) else { continue };
        let mut writes_after = writes_in(&bytes[offset..]);
        let mut bytes_after = (bytes.len() - offset) as u64;
        for later in &logs[index + 1..] {
            let later = std::fs::read(later).unwrap_or_default();
            writes_after += writes_in(&later);
            bytes_after += later.len() as u64;
        }
        return Some(LogDamage { file: file.clone(), offset: offset as u64, detail, writes_after, bytes_after });
    }
    None
}

/// The `*.log` files of a store directory, oldest first (RocksDB numbers them in order).
fn log_files(store_dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<(u64, PathBuf)> = std::fs::read_dir(store_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let number = name.strip_suffix(".log")?.parse().ok()?;
            Some((number, entry.path()))
        })
        .collect();
    logs.sort();
    logs.into_iter().map(|(_, path)| path).collect()
}

/// One physical record as read from a log.
enum Physical<'a> {
    /// A record whose checksum holds.
    Record { kind: u8 },
    /// The rest of the block is padding or unwritten space.
    EndOfBlock,
    /// The file ends inside this record: a torn write.
    TornTail,
    /// The record is damaged.
    Damaged(&'a str),
}

/// Reads the physical record at `offset` of `bytes`; returns it and its length.
fn read_physical(bytes: &[u8], offset: usize) -> (Physical<'_>, usize) {
    let left_in_block = BLOCK_SIZE - offset % BLOCK_SIZE;
    if left_in_block < HEADER_SIZE {
        return (Physical::EndOfBlock, left_in_block);
    }
    let Some(header) = bytes.get(offset..offset + HEADER_SIZE) else {
        return (Physical::TornTail, bytes.len() - offset);
    };
    let kind = header[6];
    let length = u16::from_le_bytes([header[4], header[5]]) as usize;
    if kind == ZERO_TYPE && length == 0 {
        return (Physical::EndOfBlock, left_in_block);
    }
    let header_size = if is_recyclable(kind) { RECYCLABLE_HEADER_SIZE } else { HEADER_SIZE };
    let total = header_size + length;
    if total > left_in_block {
        return (Physical::Damaged("a record length that crosses its block"), left_in_block);
    }
    let Some(record) = bytes.get(offset..offset + total) else {
        return (Physical::TornTail, bytes.len() - offset);
    };
    let stored = unmask(u32::from_le_bytes([header[0], header[1], header[2], header[3]]));
    if crc32c::crc32c(&record[6..]) != stored {
        return (Physical::Damaged("checksum mismatch"), total);
    }
    (Physical::Record { kind }, total)
}

/// Whether a record type carries the log number in its header.
fn is_recyclable(kind: u8) -> bool {
    matches!(kind, 5..=8 | 11 | 131)
}

/// RocksDB stores each record's CRC masked (rotated and offset), so that a CRC of data
/// that itself holds CRCs stays meaningful.
fn unmask(masked: u32) -> u32 {
    let rotated = masked.wrapping_sub(0xa282_ead8);
    rotated.rotate_left(15)
}

/// The offset and nature of the first damaged record of one log file.
fn first_damaged_record(bytes: &[u8]) -> Option<(usize, String)> {
    let mut offset = 0;
    while offset < bytes.len() {
        let (record, length) = read_physical(bytes, offset);
        match record {
            Physical::Damaged(detail) => return Some((offset, detail.to_owned())),
            Physical::TornTail => return None,
            Physical::Record { .. } | Physical::EndOfBlock => offset += length,
        }
    }
    None
}

/// Logical records (write batches) that start in `bytes` and read back whole; a damaged
/// record is skipped by its length when that is plausible, else with the rest of its
/// block.
fn writes_in(bytes: &[u8]) -> u64 {
    let mut writes = 0;
    let mut offset = 0;
    while offset < bytes.len() {
        let (record, length) = read_physical(bytes, offset);
        match record {
            Physical::Record { kind } => {
                if matches!(kind, FULL_TYPE | FIRST_TYPE | RECYCLABLE_FULL_TYPE | RECYCLABLE_FIRST_TYPE) {
                    writes += 1;
                }
                offset += length;
            }
            Physical::TornTail => break,
            Physical::EndOfBlock => offset += length,
            Physical::Damaged(_) => offset += length,
        }
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A physical record as RocksDB's log writer emits it (legacy header).
    fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut typed = vec![kind];
        typed.extend_from_slice(payload);
        let crc = crc32c::crc32c(&typed);
        let masked = crc.rotate_right(15).wrapping_add(0xa282_ead8);
        let mut bytes = masked.to_le_bytes().to_vec();
        bytes.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&typed);
        bytes
    }

    fn log_of(records: &[Vec<u8>]) -> Vec<u8> {
        records.concat()
    }

    #[test]
    fn the_mask_round_trips() {
        for crc in [0u32, 1, 0xdead_beef, u32::MAX] {
            assert_eq!(unmask(crc.rotate_right(15).wrapping_add(0xa282_ead8)), crc);
        }
    }

    #[test]
    fn a_whole_log_and_a_torn_tail_are_not_damage() {
        let log = log_of(&[record(FULL_TYPE, b"one"), record(FULL_TYPE, b"two"), record(FULL_TYPE, b"three")]);
        assert_eq!(first_damaged_record(&log), None);
        assert_eq!(writes_in(&log), 3);
        for cut in 1..record(FULL_TYPE, b"three").len() {
            assert_eq!(first_damaged_record(&log[..log.len() - cut]), None, "cut {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_in_the_middle_is_found_with_the_writes_after_it() {
        let records = [record(FULL_TYPE, b"one"), record(FULL_TYPE, b"two"), record(FULL_TYPE, b"three")];
        let mut log = log_of(&records);
        let second = records[0].len();
        log[second + HEADER_SIZE + 1] ^= 0x40;
        assert_eq!(first_damaged_record(&log), Some((second, "checksum mismatch".to_owned())));
        assert_eq!(writes_in(&log[second..]), 1, "the damaged record itself is not counted; the one after it is");
    }

    #[test]
    fn damage_is_reported_in_the_first_damaged_file_with_the_writes_of_later_files() {
        let dir = tempfile::tempdir().unwrap();
        let whole = log_of(&[record(FULL_TYPE, b"a")]);
        let mut damaged = log_of(&[record(FULL_TYPE, b"b"), record(FULL_TYPE, b"c")]);
        damaged[HEADER_SIZE] ^= 1;
        let later = log_of(&[record(FULL_TYPE, b"d"), record(FIRST_TYPE, b"e"), record(4, b"f")]);
        std::fs::write(dir.path().join("000007.log"), &whole).unwrap();
        std::fs::write(dir.path().join("000009.log"), &damaged).unwrap();
        std::fs::write(dir.path().join("000012.log"), &later).unwrap();
        let damage = find_log_damage(dir.path()).unwrap();
        assert_eq!(damage.file, dir.path().join("000009.log"));
        assert_eq!(damage.offset, 0);
        assert_eq!(damage.writes_after, 1 + 2, "c in the damaged file, d and e-f in the later one");
        assert_eq!(damage.bytes_after, (damaged.len() + later.len()) as u64);
        assert!(damage.to_string().contains("000009.log is damaged at byte 0"), "{damage}");
    }
}
