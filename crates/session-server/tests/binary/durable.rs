//! The durable store through the built binary: a crash (`kill -9`) loses no acknowledged
//! write, a data directory it cannot read is refused in one line and left as it was, and a
//! full disk refuses writes, keeps reads and heals by itself when space returns.

use super::{Running, run, start, wait_serving};
use session_client::{ClientConfig, Error, Ops, Protocol, SessionClient};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A directory of the test's own, removed when it ends.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn client(server: &Running) -> SessionClient {
    client_of(&server.grpc)
}

fn client_of(grpc: &str) -> SessionClient {
    SessionClient::connect_lazy(ClientConfig {
        endpoints: vec![grpc.to_owned()],
        // Generous: a loaded CI machine must not turn a slow reply into a refusal.
        timeout: Duration::from_secs(10),
        protocol: Protocol::Framed,
        ..ClientConfig::default()
    })
    .expect("client")
}

/// What one session is known to hold: the items whose push was acknowledged, how many counter
/// additions were acknowledged and how many tried, the highest compare-and-set register value
/// and the highest version acknowledged.
#[derive(Debug, Default, Clone)]
struct Known {
    items: BTreeSet<String>,
    acked: i64,
    tried: i64,
    register: i64,
    version: u64,
}

/// Two writers for a while on `ids` until `until`: most writes push a unique item on a list
/// and add to a counter in one batch, every third is a compare-and-set that increments a
/// register (the writers race on it); what was acknowledged is added to `known`.
async fn write_until(
    grpc: &str,
    ids: &[String],
    known: &Arc<Mutex<BTreeMap<String, Known>>>,
    round: usize,
    until: Instant,
) {
    let mut writers = Vec::new();
    for writer in 0..2 {
        let (client, ids, known) = (client_of(grpc), ids.to_vec(), Arc::clone(known));
        writers.push(tokio::spawn(async move {
            // The register as this writer last saw it: (value, attribute version).
            let mut seen: BTreeMap<String, (i64, u64)> = BTreeMap::new();
            let mut n = 0usize;
            while Instant::now() < until {
                let id = &ids[n % ids.len()];
                n += 1;
                if n.is_multiple_of(3) {
                    let (value, version) = seen.get(id).copied().unwrap_or_default();
                    let ops = Ops::new()
                        .set_json_if("register", &(value + 1), version)
                        .expect("json");
                    match client.apply(id, ops).await {
                        Ok(written) => {
                            seen.insert(
                                id.clone(),
                                (value + 1, written.results[0].attribute_version),
                            );
                            let mut known = known.lock().expect("lock");
                            let k = known.entry(id.clone()).or_default();
                            k.register = k.register.max(value + 1);
                            k.version = k.version.max(written.info.version);
                        }
                        Err(Error::Conflict { current, .. }) => {
                            let now = current.map_or((0, 0), |a| {
                                (a.json("register").expect("an integer"), a.version)
                            });
                            seen.insert(id.clone(), now);
                        }
                        Err(e) if e.may_have_applied() => return, // the server was killed
                        Err(e) => panic!("a compare-and-set failed: {e}"),
                    }
                    continue;
                }
                let item = format!("{round}-{writer}-{n}");
                known
                    .lock()
                    .expect("lock")
                    .entry(id.clone())
                    .or_default()
                    .tried += 1;
                let ops = Ops::new()
                    .list_push_json("items", &item, None)
                    .expect("json")
                    .counter_add("n", 1);
                match client.apply(id, ops).await {
                    Ok(written) => {
                        let mut known = known.lock().expect("lock");
                        let k = known.entry(id.clone()).or_default();
                        k.items.insert(item);
                        k.acked += 1;
                        k.version = k.version.max(written.info.version);
                    }
                    Err(e) if e.may_have_applied() => return, // the server was killed
                    Err(e) => panic!("a write failed: {e}"),
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_acknowledged_write_twenty_times_over() {
    let dir = Dir::new("durable-crash");
    let known: Arc<Mutex<BTreeMap<String, Known>>> = Arc::default();
    let mut ids: Vec<String> = Vec::new();
    for round in 0..20 {
        let mut server = start(&["--data-dir", dir.arg(), "--fsync", "everysec"]);
        wait_serving(&server.grpc).await;
        let check = client(&server);
        // Every round starts by finding what the rounds before were told was kept.
        let expected = known.lock().expect("lock").clone();
        for (id, k) in &expected {
            let session = check
                .get(id)
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            let items: Vec<String> = session.list_json("items").expect("a list");
            let unique: BTreeSet<&String> = items.iter().collect();
            assert_eq!(unique.len(), items.len(), "round {round}: an item twice");
            for item in &k.items {
                assert!(
                    unique.contains(item),
                    "round {round}: acknowledged {item} lost"
                );
            }
            let n = session.counter("n").expect("a counter");
            assert!(
                n >= k.acked && n <= k.tried,
                "round {round}: counter {n}, acknowledged {}, tried {}",
                k.acked,
                k.tried
            );
            let register: i64 = session
                .get_json("register")
                .expect("an integer")
                .unwrap_or(0);
            assert!(
                register >= k.register,
                "round {round}: register {register}, acknowledged {}",
                k.register
            );
            assert!(
                session.info.version >= k.version,
                "round {round}: the version went back"
            );
            // What is there now is what the next round must find (unacknowledged writes
            // that made it included).
            let mut known = known.lock().expect("lock");
            let entry = known.get_mut(id).expect("known");
            entry.items = items.into_iter().collect();
            entry.acked = n;
            entry.tried = n;
            entry.register = register;
            entry.version = session.info.version;
        }
        if ids.is_empty() {
            for _ in 0..4 {
                ids.push(
                    check
                        .create(Ops::new())
                        .await
                        .expect("create")
                        .info
                        .id
                        .as_str()
                        .to_owned(),
                );
            }
            for id in &ids {
                known
                    .lock()
                    .expect("lock")
                    .insert(id.clone(), Known::default());
            }
        }
        // Write, and kill the server in the middle of it.
        let kill_at = Instant::now() + Duration::from_millis(150 + (round as u64 * 37) % 200);
        let grpc = server.grpc.clone();
        let writing = write_until(&grpc, &ids, &known, round, kill_at + Duration::from_secs(5));
        let killing = async {
            tokio::time::sleep_until(kill_at.into()).await;
            server.child.kill().expect("kill -9");
            let _ = server.child.wait();
        };
        tokio::join!(writing, killing);
        let acked: i64 = known.lock().expect("lock").values().map(|k| k.acked).sum();
        assert!(acked > 0, "round {round}: the writers wrote");
    }
}

/// Every file under `dir`, with its bytes: to check a directory is left as it was.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read") {
            let entry = entry.expect("entry");
            if entry.file_type().expect("type").is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path(), std::fs::read(entry.path()).expect("read"));
            }
        }
    }
    out
}

/// Every file is as it was, bytes and all; the engine only removes manifest versions that a
/// newer one of the same keyspace superseded (it does so on every open, before it reads the
/// journal).
fn assert_left_as_it_was(before: &BTreeMap<PathBuf, Vec<u8>>, after: &BTreeMap<PathBuf, Vec<u8>>) {
    let version = |path: &Path| {
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix('v'))
            .and_then(|n| n.parse::<u64>().ok())
    };
    for (path, bytes) in before {
        match after.get(path) {
            Some(now) => assert!(now == bytes, "{} was changed", path.display()),
            None => {
                let superseded = version(path).is_some_and(|v| {
                    after.keys().any(|other| {
                        other.parent() == path.parent() && version(other).is_some_and(|o| o > v)
                    })
                });
                assert!(superseded, "{} was removed", path.display());
            }
        }
    }
    assert!(
        after.keys().all(|p| before.contains_key(p)),
        "nothing was added"
    );
}

/// Stops a server as its supervisor would, and waits for it.
/// Starts the binary with `serve` and checks that it exits 1 with one line naming `dir` and
/// saying `what`.
fn refused_in_one_line(serve: &[&str], dir: &str, what: &str) {
    let out = run(serve);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(dir) && err.contains(what),
        "names the directory and what to do: {err}"
    );
}

/// Checks that a command failed, saying `says`.
fn assert_refused(out: &std::process::Output, says: &str) {
    let refusal = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && refusal.contains(says), "{refusal}");
}

fn stop(mut server: Running) {
    let pid = server.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let _ = server.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_data_directory_is_refused_in_one_line_and_left_as_it_was() {
    let dir = Dir::new("durable-damaged");
    let mut ids = Vec::new();
    {
        let server = start(&["--data-dir", dir.arg()]);
        wait_serving(&server.grpc).await;
        let c = client(&server);
        for n in 0..50 {
            let created = c.create(Ops::new().set_json("n", &n).expect("json")).await;
            ids.push(created.expect("create").info.id.as_str().to_owned());
        }
        stop(server);
    }
    // Flip bytes in the middle of the journal that holds the writes.
    let journal = std::fs::read_dir(&dir.0)
        .expect("read")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "jnl"))
        .expect("a journal");
    let intact = std::fs::read(&journal).expect("read");
    let mut bytes = intact.clone();
    let used = bytes.iter().rposition(|b| *b != 0).expect("written");
    for b in &mut bytes[used / 3..used / 3 + 16] {
        *b ^= 0xa5;
    }
    std::fs::write(&journal, &bytes).expect("write");
    let before = contents(&dir.0);

    let serve = [
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.arg(),
    ];
    refused_in_one_line(&serve, dir.arg(), "restore a backup");
    assert_left_as_it_was(&before, &contents(&dir.0));

    // Nothing was discarded: with the journal put back, every session is there.
    std::fs::write(&journal, &intact).expect("write");
    let server = start(&["--data-dir", dir.arg()]);
    wait_serving(&server.grpc).await;
    let c = client(&server);
    for (n, id) in ids.iter().enumerate() {
        let session = c.get(id).await.expect("kept");
        assert_eq!(session.get_json::<usize>("n").expect("json"), Some(n));
    }
    drop(server);

    let foreign = Dir::new("durable-foreign");
    std::fs::create_dir_all(&foreign.0).expect("dir");
    std::fs::write(foreign.0.join("photo.jpg"), b"not sessions").expect("write");
    let out = run(&[
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        foreign.arg(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds files but no session data"), "{err}");
}

/// A small tmpfs of its own, unmounted when the test ends.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(name: &str, size: &str) -> Self {
        let at = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&at).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .expect("run mount");
        assert!(
            mounted.success(),
            "this test fills a small disk: it mounts a tmpfs, which needs root (CI runs as root)"
        );
        Self(at)
    }

    fn remount(&self, options: &str) {
        let remounted = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(remounted.success(), "remount the tmpfs {options}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_heals_when_space_returns() {
    let disk = SmallDisk::mount("small-disk", "4m");
    let data = disk.0.join("data");
    let data = data.to_str().expect("utf-8");
    let server = start(&["--data-dir", data, "--sweep-interval", "200ms"]);
    wait_serving(&server.grpc).await;
    let c = client(&server);
    // Random letters: fjall compresses its journal and tables, and a repeated letter would
    // take next to no room.
    let big: String = (0..60 * 1024)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    let mut kept = Vec::new();
    let refusal = loop {
        match c
            .create(Ops::new().set_json("big", &big).expect("json"))
            .await
        {
            Ok(written) => kept.push(written.info.id),
            Err(e) => break e,
        }
        assert!(kept.len() < 1_000, "4 MiB never filled");
    };
    assert!(refusal.is_unavailable(), "{refusal}");
    assert!(
        refusal.to_string().contains("cannot be written"),
        "says why: {refusal}"
    );
    // The rest of the disk taken too, so that no repair can succeed meanwhile.
    let filler = disk.0.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).expect("filler");
        for size in [4096, 512, 1] {
            let block = vec![0u8; size];
            while file.write_all(&block).is_ok() {}
        }
    }
    for id in &kept {
        c.get(id).await.expect("reads go on from memory");
    }
    for _ in 0..5 {
        let again = c.apply(&kept[0], Ops::new().counter_add("n", 1)).await;
        assert!(
            matches!(&again, Err(Error::Unavailable(m)) if m.contains("cannot be written")),
            "writes are refused while the disk is full: {again:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    std::fs::remove_file(&filler).expect("remove the filler");
    disk.remount("size=64m");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if c.apply(&kept[0], Ops::new().counter_add("n", 1))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes never came back once there was room"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Healed, and what was acknowledged is still kept across a restart.
    stop(server);
    let server = start(&["--data-dir", data]);
    wait_serving(&server.grpc).await;
    let c = client(&server);
    for id in &kept {
        c.get(id).await.expect("kept across the restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_table_or_a_read_only_directory_is_refused_in_one_line() {
    let disk = SmallDisk::mount("read-only-disk", "64m");
    let data = disk.0.join("data");
    let data = data.to_str().expect("utf-8");
    let server = start(&["--data-dir", data]);
    wait_serving(&server.grpc).await;
    let c = client(&server);
    // More than a memtable (16 MiB), so the engine writes tables.
    // Random letters: fjall compresses its journal and tables, and a repeated letter would
    // take next to no room.
    let big: String = (0..60 * 1024)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    for _ in 0..400 {
        c.create(Ops::new().set_json("big", &big).expect("json"))
            .await
            .expect("create");
    }
    stop(server);
    let serve = [
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
    ];

    disk.remount("ro");
    refused_in_one_line(&serve, data, "writable");
    disk.remount("rw");

    let table = contents(Path::new(data))
        .into_iter()
        .filter(|(path, _)| path.components().any(|c| c.as_os_str() == "tables"))
        .max_by_key(|(_, bytes)| bytes.len())
        .map(|(path, _)| path)
        .expect("a table");
    let len = std::fs::metadata(&table).expect("table").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&table)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    let before = contents(Path::new(data));
    refused_in_one_line(&serve, data, "restore a backup");
    assert_left_as_it_was(&before, &contents(Path::new(data)));
}

/// Every file under `dir` and its mode bits.
#[cfg(unix)]
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read") {
        let entry = entry.expect("entry");
        let mode = entry.metadata().expect("metadata").permissions().mode() & 0o777;
        if entry.file_type().expect("type").is_dir() {
            found.push((entry.path(), mode));
            found.extend(modes(&entry.path()));
        } else {
            found.push((entry.path(), mode));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writes_go_on_is_one_consistent_copy_a_server_serves() {
    use session_client::Token;
    let dir = Dir::new("durable-backup");
    let secrets = dir.0.join("secrets");
    let path = |name: &str| secrets.join(name).to_str().expect("utf-8").to_owned();
    let out = run(&["setup", "--dir", &path("")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = dir.0.join("data");
    let server = start(&[
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--auth-file",
        &path("auth"),
    ]);
    wait_serving(&server.grpc).await;
    let app_token = std::fs::read_to_string(path("cart.token")).expect("token");
    let cart_of = |grpc: &str| {
        SessionClient::connect_lazy(ClientConfig {
            endpoints: vec![grpc.to_owned()],
            timeout: Duration::from_secs(2),
            protocol: Protocol::Framed,
            token: Some(Token::new(app_token.trim())),
            ..ClientConfig::default()
        })
        .expect("client")
    };
    let cart = cart_of(&server.grpc);
    let mut ids = Vec::new();
    for n in 0..200 {
        let created = cart
            .create(
                Ops::new()
                    .set_json("n", &n)
                    .expect("json")
                    .counter_add("pair", 0),
            )
            .await;
        ids.push(created.expect("create").info.id.as_str().to_owned());
    }
    // Each write moves two counters of a session together: a copy of one instant has them
    // equal in every session.
    let until = Instant::now() + Duration::from_secs(3);
    let writer = {
        let (cart, ids) = (cart.clone(), ids.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < until {
                let id = &ids[n % ids.len()];
                n += 1;
                let ops = Ops::new().counter_add("a", 1).counter_add("b", 1);
                cart.apply(id, ops).await.expect("write");
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backup = |to: &str, extra: &[&str]| {
        let mut args = vec!["backup", "--addr", &server.grpc, "--to", to];
        args.extend_from_slice(extra);
        run(&args)
    };
    let copy = dir.0.join("copy");
    let copy_arg = copy.to_str().expect("utf-8").to_owned();
    let admin_token = path("admin.token");
    let out = backup(&copy_arg, &["--token-file", &admin_token]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("backup of 200 sessions") && said.contains(&copy_arg),
        "{said}"
    );
    let writes = writer.await.expect("writer");
    assert!(writes > 100, "writes went on during the backup: {writes}");

    // Refused: no credential, an app's, a destination that exists; the copy stays as it was.
    let anonymous = backup(&dir.0.join("x").to_string_lossy(), &[]);
    assert_refused(&anonymous, "admin credential");
    let as_app = backup(
        &dir.0.join("x").to_string_lossy(),
        &["--token-file", &path("cart.token")],
    );
    assert_refused(&as_app, "app's credential cannot");
    assert!(
        !dir.0.join("x").exists(),
        "nothing written for a refused call"
    );
    let again = backup(&copy_arg, &["--token-file", &admin_token]);
    assert_refused(&again, "never overwrites");
    // The copy is the server user's alone.
    #[cfg(unix)]
    for (file, mode) in modes(&copy) {
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", file.display());
    }
    // While the server has its directory open, an offline copy is refused in one line.
    let offline = run(&[
        "backup",
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--to",
        &dir.0.join("y").to_string_lossy(),
    ]);
    assert_refused(&offline, "ask that server");
    stop(server);

    // Restore: a server on the copy serves every session, each as of one instant.
    let restored = start(&["--data-dir", &copy_arg, "--auth-file", &path("auth")]);
    wait_serving(&restored.grpc).await;
    let c = cart_of(&restored.grpc);
    for (n, id) in ids.iter().enumerate() {
        let session = c.get(id).await.expect("restored");
        assert_eq!(session.get_json::<i64>("n").expect("n"), Some(n as i64));
        let (a, b) = (
            session.counter("a").unwrap_or(0),
            session.counter("b").unwrap_or(0),
        );
        assert_eq!(
            a, b,
            "session {n}: its two counters moved together, and were copied so"
        );
    }
    stop(restored);
    // Offline, once no server has it open: a copy of the copy.
    let second = dir.0.join("second");
    let out = run(&[
        "backup",
        "--data-dir",
        &copy_arg,
        "--to",
        second.to_str().expect("utf-8"),
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("backup of 200 sessions"),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A memory store keeps nothing to copy, and says so.
    let memory = start(&["--store", "memory"]);
    wait_serving(&memory.grpc).await;
    let out = run(&[
        "backup",
        "--addr",
        &memory.grpc,
        "--to",
        &dir.0.join("z").to_string_lossy(),
    ]);
    assert_refused(&out, "nothing to back up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_expired_while_the_server_was_down_are_not_found_after_its_restart() {
    let dir = Dir::new("durable-expired");
    let server = start(&["--data-dir", dir.arg()]);
    wait_serving(&server.grpc).await;
    let c = client(&server);
    let second = Some(Duration::from_secs(1));
    let idle = c.create_with(
        Ops::new().set_json("a", &1).expect("json"),
        second,
        None,
        false,
    );
    let idle = idle.await.expect("create").info.id;
    let ended = c.create_with(
        Ops::new().set_json("a", &2).expect("json"),
        None,
        second,
        false,
    );
    let ended = ended.await.expect("create").info.id;
    let kept = c.create(Ops::new().set_json("a", &3).expect("json")).await;
    let kept = kept.expect("create").info.id;
    stop(server);
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let server = start(&["--data-dir", dir.arg()]);
    wait_serving(&server.grpc).await;
    let c = client(&server);
    for (what, id) in [
        ("idle past its timeout", &idle),
        ("past its lifetime", &ended),
    ] {
        let found = c.get(id.as_str()).await;
        assert!(matches!(found, Err(Error::NotFound)), "{what}: {found:?}");
    }
    let session = c.get(kept.as_str()).await.expect("the live one is back");
    assert_eq!(session.get_json::<i64>("a").expect("a"), Some(3));
}
