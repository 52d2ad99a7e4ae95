//! The log's rules on real files. The same rules under every power cut of generated commit
//! sequences: `power_cuts.rs`.

use super::*;

fn group(i: u8) -> Writes {
    vec![(vec![b'k', i], Some(vec![i; 100])), (vec![b'r', i], None)]
}

fn log(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(FILE)
}

/// A log holding `n` groups, as a crash after their syncs leaves it, and its bytes up to the
/// end of the last record (the free space after it left out).
fn written(n: u8) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path()).unwrap().wal;
    wal.reset().unwrap();
    for i in 0..n {
        wal.append(&group(i)).unwrap();
    }
    let end = wal.bytes() as usize;
    drop(wal);
    let bytes = std::fs::read(log(&dir)).unwrap();
    assert!(bytes[end..].iter().all(|&b| b == 0), "free space is zeros");
    (dir, bytes[..end].to_vec())
}

#[test]
fn groups_come_back_in_order() {
    let (dir, _) = written(3);
    let back = Wal::open(dir.path()).unwrap();
    assert_eq!(back.groups, (0..3).map(group).collect::<Vec<_>>());
    assert_eq!(back.torn_bytes, 0);
    assert!(back.wal.needs_reset(), "what was replayed is reset away");
}

#[test]
fn a_log_that_was_not_reset_takes_no_group() {
    let (dir, _) = written(1);
    let mut wal = Wal::open(dir.path()).unwrap().wal;
    assert!(wal.append(&group(9)).is_err());
    wal.reset().unwrap();
    wal.append(&group(9)).unwrap();
}

#[test]
fn a_torn_last_record_is_dropped_and_the_rest_kept() {
    let (dir, bytes) = written(2);
    let second = encode(1, &group(1)).unwrap().len();
    let first_end = bytes.len() - second;
    for cut in first_end + 1..bytes.len() {
        std::fs::write(log(&dir), &bytes[..cut]).unwrap();
        let back = Wal::open(dir.path()).unwrap();
        assert_eq!(back.groups, vec![group(0)], "cut at {cut}");
        // Counted up to the last byte that is not zero: zeros after it are free space.
        let torn = bytes[first_end..cut].iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        assert_eq!(back.torn_bytes, torn as u64, "cut at {cut}");
    }
}

/// Defect 1 of the power-cut trial: the first part of the last, never-synced write lost (a
/// hole of zeros), the rest of that write kept. It was "damaged at byte N" and the store would
/// not open; it is a torn tail.
#[test]
fn a_torn_write_that_lost_its_first_part_never_keeps_the_store_from_opening() {
    let (dir, bytes) = written(2);
    let third = encode(1, &group(2)).unwrap();
    for hole in 1..third.len() {
        let mut torn = bytes.clone();
        torn.extend(std::iter::repeat_n(0, hole));
        torn.extend_from_slice(&third[hole..]);
        std::fs::write(log(&dir), &torn).unwrap();
        let back = Wal::open(dir.path()).unwrap_or_else(|e| panic!("hole of {hole}: {e}"));
        assert_eq!(back.groups, vec![group(0), group(1)], "hole of {hole}");
        assert_eq!(back.torn_bytes, third.len() as u64);
    }
}

/// Defect 2 of the power-cut trial: a damaged length in the middle pointed past the end, was
/// taken for a torn tail, and every acknowledged commit after it was cut. The length is
/// inside the checksum now, and a bad record before intact ones is refused.
#[test]
fn a_damaged_record_before_intact_ones_is_refused_and_nothing_is_cut() {
    let (dir, bytes) = written(3);
    let first = encode(1, &group(0)).unwrap().len();
    for at in HEADER_LEN..HEADER_LEN + first {
        for bit in [0x01, 0x80] {
            let mut damaged = bytes.clone();
            damaged[at] ^= bit;
            std::fs::write(log(&dir), &damaged).unwrap();
            match Wal::open(dir.path()) {
                Err(WalError::Damaged {
                    at: found,
                    what: Damage::BeforeIntactRecord(_),
                    ..
                }) => assert_eq!(found, HEADER_LEN as u64, "byte {at}"),
                other => panic!("byte {at} flipped: {other:?}"),
            }
            assert_eq!(std::fs::read(log(&dir)).unwrap(), damaged, "nothing was changed");
        }
    }
}

#[test]
fn a_damaged_header_before_records_is_refused() {
    let (dir, mut bytes) = written(1);
    bytes[3] ^= 0x20;
    std::fs::write(log(&dir), &bytes).unwrap();
    assert!(matches!(
        Wal::open(dir.path()),
        Err(WalError::Damaged {
            at: 0,
            what: Damage::Header,
            ..
        })
    ));
}

#[test]
fn reset_starts_the_next_epoch_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path()).unwrap().wal;
    wal.reset().unwrap();
    wal.append(&group(1)).unwrap();
    let stale = std::fs::read(log(&dir)).unwrap();
    wal.reset().unwrap();
    wal.append(&group(2)).unwrap();
    drop(wal);
    assert_eq!(Wal::open(dir.path()).unwrap().groups, vec![group(2)]);
    // A record of the previous epoch after the header is not this log's.
    let mut bytes = std::fs::read(log(&dir)).unwrap();
    bytes.truncate(HEADER_LEN);
    bytes.extend_from_slice(&stale[HEADER_LEN..]);
    std::fs::write(log(&dir), &bytes).unwrap();
    let back = Wal::open(dir.path()).unwrap();
    assert!(back.groups.is_empty());
}

/// A record as logs before format 5 wrote them.
fn legacy(writes: &Writes) -> Vec<u8> {
    let record = encode(0, writes).unwrap();
    let payload = &record[RECORD_HEADER_LEN..];
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn an_older_log_is_read_and_must_be_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = legacy(&group(0));
    bytes.extend(legacy(&Vec::new())); // its writer logged empty groups
    bytes.extend(legacy(&group(1)));
    let torn = legacy(&group(2));
    let mut with_hole = bytes.clone();
    with_hole.extend(std::iter::repeat_n(0, 12));
    with_hole.extend_from_slice(&torn[12..]);
    for file in [&bytes, &with_hole] {
        std::fs::write(log(&dir), file).unwrap();
        let back = Wal::open(dir.path()).unwrap();
        assert_eq!(back.groups, vec![group(0), group(1)]);
        assert!(back.wal.needs_reset());
    }
    let mut damaged = bytes.clone();
    damaged[2] ^= 0x01; // the first record's length, which that format did not check
    std::fs::write(log(&dir), &damaged).unwrap();
    assert!(matches!(Wal::open(dir.path()), Err(WalError::Damaged { at: 0, .. })));
}

#[test]
fn a_new_log_is_empty_and_gets_its_header_at_the_first_reset() {
    let dir = tempfile::tempdir().unwrap();
    let mut back = Wal::open(dir.path()).unwrap();
    assert!(back.groups.is_empty());
    assert!(back.wal.needs_reset());
    back.wal.reset().unwrap();
    let mut fresh = header(1);
    fresh.resize(GROW_BYTES as usize, 0);
    assert_eq!(std::fs::read(log(&dir)).unwrap(), fresh, "a header, then free space");
    let again = Wal::open(dir.path()).unwrap();
    assert_eq!(again.torn_bytes, 0, "free space is not a torn write");
    assert!(!again.wal.needs_reset());
}

/// A commit's sync changes the file's size only when a record does not fit the free space;
/// then the log writes zeros ahead, a whole number of steps, and reads back as written.
#[test]
fn the_log_grows_ahead_of_its_records_in_steps_of_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let step = 300;
    let file = || Box::new(crate::disk::FileLog::open(dir.path(), FILE).unwrap());
    let mut wal = Wal::recover_growing_by(file(), step).unwrap().wal;
    wal.reset().unwrap();
    let mut sizes = Vec::new();
    for i in 0..8 {
        wal.append(&group(i)).unwrap();
        let size = std::fs::metadata(log(&dir)).unwrap().len();
        assert!(
            size >= wal.bytes() && size.is_multiple_of(step),
            "size {size} after {} bytes",
            wal.bytes()
        );
        sizes.push(size);
    }
    sizes.dedup();
    assert!(
        sizes.len() > 1 && sizes.len() < 8,
        "grew in steps, not at every record: {sizes:?}"
    );
    drop(wal);
    let back = Wal::recover_growing_by(file(), step).unwrap();
    assert_eq!(back.groups, (0..8).map(group).collect::<Vec<_>>());
    assert_eq!(back.torn_bytes, 0);
}
