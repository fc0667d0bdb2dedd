//! The instance tracker and named holders: the bounded wait names who keeps a store
//! open, and returns Ok once they let go.

use std::time::Duration;

use mpc_store::{Store, StoreOptions, open_instances, wait_until_group_instances_are_dropped};

#[test]
fn bounded_wait_names_the_holder_left_alive_and_succeeds_once_it_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), &StoreOptions::new("tracked", "tracker-test")).unwrap();
    let holder = store.holder("monitor_tee_accounts");
    drop(store);

    let still_open = wait_until_group_instances_are_dropped("tracker-test", Duration::from_millis(50)).unwrap_err();
    assert_eq!(still_open.len(), 1);
    assert_eq!(still_open[0].name, "tracked");
    assert_eq!(still_open[0].holders, vec!["monitor_tee_accounts".to_string()]);
    assert!(open_instances().iter().any(|instance| instance.holders.contains(&"monitor_tee_accounts".to_string())));

    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        drop(holder);
    });
    wait_until_group_instances_are_dropped("tracker-test", Duration::from_secs(10)).unwrap();
    releaser.join().unwrap();
}

#[test]
fn holders_are_listed_until_dropped_and_the_store_stays_open_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), &StoreOptions::new("listed", "holders-test")).unwrap();
    let first = store.holder("streamer");
    let second = first.holder("listen_blocks");
    let listed = |group: &str| {
        open_instances()
            .into_iter()
            .filter(|instance| instance.group == group)
            .flat_map(|i| i.holders)
            .collect::<Vec<_>>()
    };
    assert_eq!(listed("holders-test"), vec!["streamer".to_string(), "listen_blocks".to_string()]);
    drop(first);
    assert_eq!(listed("holders-test"), vec!["listen_blocks".to_string()]);
    drop(store);
    assert!(wait_until_group_instances_are_dropped("holders-test", Duration::ZERO).is_err());
    drop(second);
    assert!(wait_until_group_instances_are_dropped("holders-test", Duration::ZERO).is_ok());
}
