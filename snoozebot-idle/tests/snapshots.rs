//! The samplers on recorded `/proc` snapshots (a 2-CPU VM: idle, busy, a spike, a counter that
//! wrapped), and the monitor on paused time over a root the test rewrites between samples.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use snoozebot_idle::{Event, IdleError, Monitor, Probe, ProcRoot, Rates, Signal, Thresholds};

const MEMINFO: &str = "MemTotal:       24683584 kB\nMemFree:        13205828 kB\nMemAvailable:   20090676 kB\nBuffers:           78604 kB\n";

/// Writes one moment's `/proc/stat`, `/proc/net/dev` and `/proc/diskstats` under `root`:
/// `cpu` is (user, system, idle) ticks, `net` (eth0 rx, tx) bytes, `disk` (vda read, written)
/// sectors.
fn moment(root: &Path, cpu: (u64, u64, u64), net: (u64, u64), disk: (u64, u64)) {
    std::fs::create_dir_all(root.join("proc/net")).unwrap();
    let (user, system, idle) = cpu;
    std::fs::write(
        root.join("proc/stat"),
        format!(
            "cpu  {user} 12 {system} {idle} 300 0 40 0 0 0\ncpu0 {} 6 {} {} 150 0 20 0 0 0\nintr 123\n",
            user / 2,
            system / 2,
            idle / 2
        ),
    )
    .unwrap();
    std::fs::write(root.join("proc/meminfo"), MEMINFO).unwrap();
    let (rx, tx) = net;
    std::fs::write(
        root.join("proc/net/dev"),
        format!(
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo: 999999999 100 0 0 0 0 0 0 999999999 100 0 0 0 0 0 0\n  \
             eth0: {rx} 5000 0 0 0 0 0 0 {tx} 4000 0 0 0 0 0 0\n"
        ),
    )
    .unwrap();
    let (read, written) = disk;
    std::fs::write(
        root.join("proc/diskstats"),
        format!(
            " 253       0 vda 1000 0 {read} 500 2000 0 {written} 900 0 1200 1400\n \
             253       1 vda1 900 0 {read} 450 1900 0 {written} 800 0 1100 1300\n   \
             7       0 loop0 10 0 99999 1 0 0 0 0 0 1 1\n"
        ),
    )
    .unwrap();
}

fn rates(
    before: (u64, u64, u64),
    after: (u64, u64, u64),
    net: ((u64, u64), (u64, u64)),
    disk: ((u64, u64), (u64, u64)),
) -> Rates {
    let dir = tempfile::tempdir().unwrap();
    let root = ProcRoot::at(dir.path());
    moment(dir.path(), before, net.0, disk.0);
    let first = root.snapshot().unwrap();
    moment(dir.path(), after, net.1, disk.1);
    let second = root.snapshot().unwrap();
    Rates::between(&first, &second, Duration::from_secs(10), SystemTime::now())
}

#[test]
fn an_idle_machine_reads_as_idle() {
    // 10 s on 2 CPUs = 2,000 ticks: 10 busy. 20 KB over the network, 8 sectors to disk.
    let rates = rates(
        (50_000, 20_000, 900_000),
        (50_006, 20_004, 901_990),
        ((1_000_000, 2_000_000), (1_010_000, 2_010_000)),
        ((400_000, 800_000), (400_000, 800_008)),
    );
    assert!(rates.cpu_percent < 1.0, "{rates:?}");
    assert_eq!(rates.network_bytes_per_second, 2_000.0);
    assert_eq!(
        rates.disk_bytes_per_second,
        8.0 * 512.0 / 10.0,
        "partitions and loops not counted"
    );
    assert!(
        (rates.memory_percent - 18.6).abs() < 0.1,
        "{}",
        rates.memory_percent
    );
    assert!(Thresholds::default().busy(&rates).is_empty());
}

#[test]
fn a_busy_machine_reads_as_busy_in_each_signal() {
    let rates = rates(
        (50_000, 20_000, 900_000),
        (51_200, 20_400, 900_400),
        ((1_000_000, 2_000_000), (51_000_000, 2_500_000)),
        ((400_000, 800_000), (500_000, 900_000)),
    );
    assert!(rates.cpu_percent > 79.0, "{rates:?}");
    assert_eq!(
        Thresholds::default().busy(&rates),
        [Signal::Cpu, Signal::Network, Signal::Disk]
    );
}

#[test]
fn a_counter_that_wrapped_is_no_traffic_not_a_flood() {
    // A 32-bit rx counter wrapped between the samples.
    let rates = rates(
        (50_000, 20_000, 900_000),
        (50_006, 20_004, 901_990),
        ((4_294_960_000, 2_000_000), (5_000, 2_000_100)),
        ((400_000, 800_000), (400_000, 800_000)),
    );
    assert_eq!(rates.network_bytes_per_second, 10.0, "only tx grew");
    assert!(Thresholds::default().busy(&rates).is_empty());
}

#[test]
fn garbage_and_missing_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = ProcRoot::at(dir.path());
    assert!(matches!(root.snapshot(), Err(IdleError::Io { .. })));
    moment(dir.path(), (1, 1, 1), (1, 1), (1, 1));
    std::fs::write(dir.path().join("proc/stat"), "cpu  a b c d\n").unwrap();
    assert!(matches!(root.snapshot(), Err(IdleError::Malformed(_))));
    std::fs::write(dir.path().join("proc/stat"), b"\xff\xfe\x00").unwrap();
    assert!(root.snapshot().is_err());
    moment(dir.path(), (1, 1, 1), (1, 1), (1, 1));
    std::fs::write(dir.path().join("proc/meminfo"), "MemTotal: 10 kB\n").unwrap();
    assert!(
        matches!(root.snapshot(), Err(IdleError::Malformed(what)) if what.contains("MemAvailable"))
    );
}

#[test]
fn recent_terminal_input_keeps_the_machine_awake() {
    let dir = tempfile::tempdir().unwrap();
    moment(dir.path(), (1, 1, 1), (1, 1), (1, 1));
    std::fs::create_dir_all(dir.path().join("dev/pts")).unwrap();
    std::fs::write(dir.path().join("dev/pts/ptmx"), "").unwrap();
    // Typed on an hour ago (read: access time), written to just now (output: modification
    // time): input counts, output does not.
    let typed_at = SystemTime::now() - Duration::from_secs(3600);
    let terminal = std::fs::File::create(dir.path().join("dev/pts/0")).unwrap();
    terminal
        .set_times(
            std::fs::FileTimes::new()
                .set_accessed(typed_at)
                .set_modified(SystemTime::now()),
        )
        .unwrap();
    let root = ProcRoot::at(dir.path());
    let snapshot = root.snapshot().unwrap();
    assert_eq!(snapshot.last_terminal_input, Some(typed_at));
    let soon = Rates::between(
        &snapshot,
        &snapshot,
        Duration::from_secs(10),
        typed_at + Duration::from_secs(60),
    );
    assert_eq!(Thresholds::default().busy(&soon), [Signal::Terminal]);
    let later = Rates::between(
        &snapshot,
        &snapshot,
        Duration::from_secs(10),
        typed_at + Duration::from_secs(3600),
    );
    assert!(Thresholds::default().busy(&later).is_empty());
}

/// The monitor on paused time: samples every 10 s, idle after a 60 s nap; a spike of one
/// sample does not reset it; a busy minute makes it active; a probe keeps it awake.
#[tokio::test(start_paused = true)]
async fn the_monitor_reports_idle_after_the_nap_and_active_when_busy_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let ticks = Arc::new(Mutex::new((50_000u64, 900_000u64)));
    moment(&root, (50_000, 20_000, 900_000), (0, 0), (0, 0));
    let events = Arc::new(Mutex::new(Vec::new()));
    let keep_awake = Arc::new(Mutex::new(false));
    let probe_flag = Arc::clone(&keep_awake);
    let monitor = Monitor::new(
        ProcRoot::at(&root),
        Thresholds::default(),
        Duration::from_secs(10),
        Duration::from_secs(60),
        Duration::from_secs(15),
    )
    .with_probe(Probe::Callback {
        name: "backup".into(),
        busy: Arc::new(move || *probe_flag.lock().unwrap()),
    });
    let seen = Arc::clone(&events);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(
        monitor.run(move |event| seen.lock().unwrap().push(event), async {
            let _ = stopped.await;
        }),
    );
    // Each 10 s: `busy` ticks of 2,000 are busy.
    let advance = |busy: u64| {
        let (user, idle) = {
            let mut ticks = ticks.lock().unwrap();
            ticks.0 += busy;
            ticks.1 += 2_000 - busy;
            *ticks
        };
        moment(&root, (user, 20_000, idle), (0, 0), (0, 0));
    };
    let step = || tokio::time::sleep(Duration::from_secs(10));
    for _ in 0..4 {
        advance(20);
        step().await;
    }
    // A one-sample spike.
    advance(1_800);
    step().await;
    for _ in 0..4 {
        advance(20);
        step().await;
    }
    assert!(
        matches!(events.lock().unwrap().as_slice(), [Event::Idle { .. }]),
        "{:?}",
        events.lock().unwrap()
    );
    // Busy for 20 s: active.
    advance(1_500);
    step().await;
    advance(1_500);
    step().await;
    advance(1_500);
    step().await;
    assert!(
        matches!(events.lock().unwrap().last(), Some(Event::Active { busy }) if busy == &[Signal::Cpu])
    );
    // Quiet CPU but the probe says busy: it stays awake.
    *keep_awake.lock().unwrap() = true;
    for _ in 0..10 {
        advance(20);
        step().await;
    }
    assert_eq!(
        events.lock().unwrap().len(),
        2,
        "{:?}",
        events.lock().unwrap()
    );
    stop.send(()).unwrap();
    running.await.unwrap();
}

/// The GPUs (through a stand-in for `nvidia-smi` that prints what the test writes) and a
/// watched process keep the machine awake; in real time on a 20 ms interval, each change
/// awaited as an event.
#[tokio::test]
async fn a_busy_gpu_or_a_watched_process_keeps_the_machine_awake() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    moment(&root, (50_000, 20_000, 900_000), (0, 0), (0, 0));
    let reading = dir.path().join("gpu");
    std::fs::write(&reading, "2\n0\n").unwrap();
    let smi = dir.path().join("nvidia-smi");
    std::fs::write(&smi, format!("#!/bin/sh\ncat '{}'\n", reading.display())).unwrap();
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (events, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let monitor = Monitor::new(
        ProcRoot::at(&root),
        Thresholds::default(),
        Duration::from_millis(20),
        Duration::from_millis(100),
        Duration::ZERO,
    )
    .with_gpu(snoozebot_idle::GpuProbe::default().with_command(&smi))
    .with_processes(["rsync".to_owned()]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(monitor.run(
        move |event| {
            let _ = events.send(event);
        },
        async {
            let _ = stopped.await;
        },
    ));
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("no event within 10 s")
            .unwrap()
    };
    assert!(matches!(next().await, Event::Idle { .. }));
    std::fs::write(&reading, "2\n87\n").unwrap();
    assert_eq!(
        next().await,
        Event::Active {
            busy: vec![Signal::Gpu]
        }
    );
    std::fs::write(&reading, "[N/A]\n").unwrap();
    assert!(matches!(next().await, Event::Idle { .. }));
    std::fs::create_dir_all(root.join("proc/4242")).unwrap();
    std::fs::write(root.join("proc/4242/comm"), "rsync\n").unwrap();
    assert_eq!(
        next().await,
        Event::Active {
            busy: vec![Signal::Process("rsync".into())]
        }
    );
    stop.send(()).unwrap();
    running.await.unwrap();
}
