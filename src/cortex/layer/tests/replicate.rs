//! A layer that takes another's log records through `replicate` ends up holding exactly what
//! the other holds; a record out of order is refused with nothing written; a read-only layer
//! refuses `store` but still replicates.

use super::bulk::{calls, dump, log_of, store_from};
use super::random::check_indexes;
use super::*;

#[test]
fn a_replicated_layer_equals_its_leader() {
    let (_d1, leader) = fresh();
    store_from(&leader, &calls(), 0);
    let records = log_of(&leader);
    assert!(records.len() > 100);

    let (_d2, mirror) = fresh();
    mirror.set_read_only(Some("a mirror".into()));
    // In batches of several sizes, as records arrive, some synced and some not.
    let mut at = 0;
    for (n, size) in [1usize, 7, 64, 3].iter().cycle().enumerate() {
        if at == records.len() {
            break;
        }
        let end = (at + size).min(records.len());
        mirror
            .replicate(&records[at..end], n % 2 == 0)
            .expect("replicate");
        at = end;
    }
    mirror.make_durable().expect("durable");
    assert_eq!(mirror.next_offset(), leader.next_offset());
    assert_eq!(log_of(&mirror), records);
    check_indexes(&mirror);
    assert_eq!(dump(&mirror), dump(&leader));

    let err = mirror.store(&[ipv4(1)], &meta(1)).unwrap_err();
    assert_eq!(err.name, "IsReadOnly");
    assert_eq!(err.mesg(), "a mirror");
}

#[test]
fn a_record_out_of_order_is_refused_and_nothing_is_written() {
    let (_d1, leader) = fresh();
    for n in 0..3 {
        leader.store(&[ipv4(n)], &meta(n as i64)).expect("store");
    }
    let records = log_of(&leader);
    let (_d2, mirror) = fresh();
    mirror.replicate(&records[..1], true).expect("first");
    let before = dump(&mirror);
    // Record 0 again; record 2 without 1; and 1 followed by 0, refused whole.
    let again = [records[0].clone()];
    let skipped = [records[2].clone()];
    let half_good = [records[1].clone(), records[0].clone()];
    for wrong in [&again[..], &skipped[..], &half_good[..]] {
        let err = mirror.replicate(wrong, true).unwrap_err();
        assert_eq!(err.name, "MirrorDesync", "{err}");
    }
    assert_eq!(dump(&mirror), before);
    assert_eq!(mirror.next_offset(), 1);
    mirror.replicate(&records[1..], true).expect("in order");
    assert_eq!(log_of(&mirror), records);
}
