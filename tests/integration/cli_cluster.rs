//! The real binaries on a cluster: `datafusion-bedrock scheduler`, two `datafusion-bedrock
//! executor` processes on free loopback ports, and the shell with `--cluster` running the seed
//! document's flow over files, with the same output as on one machine. Every process has its
//! own empty home and no AWS settings; all of them are stopped at the end.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::cli::manifest;

/// The binary with `args`, stopped if the test ends first.
fn command(home: &Path, args: &[&str]) -> Command {
    let mut cmd = crate::cli::command(home, args);
    cmd.kill_on_drop(true);
    cmd
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts connections on `port` (at most 60 s).
async fn listening(port: u16) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on port {port}");
}

async fn stop(mut child: Child) {
    child.kill().await.expect("stopped");
}

/// A `datafusion-bedrock scheduler` and two `datafusion-bedrock executor` processes on free
/// loopback ports: the scheduler, the executors and the scheduler's port.
async fn start_cluster(home: &Path) -> (Child, Vec<Child>, u16) {
    let scheduler_port = free_port();
    let scheduler = command(home, &["scheduler", "--port", &scheduler_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("scheduler");
    listening(scheduler_port).await;
    let mut executors = Vec::new();
    for n in 0..2 {
        let (port, grpc) = (free_port(), free_port());
        let work = home.join(format!("executor-{n}"));
        std::fs::create_dir_all(&work).expect("work dir");
        let executor = command(
            home,
            &[
                "executor",
                "--port",
                &port.to_string(),
                "--grpc-port",
                &grpc.to_string(),
                "--scheduler-port",
                &scheduler_port.to_string(),
                "--concurrent-tasks",
                "2",
                "--work-dir",
                work.to_str().expect("utf-8 path"),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("executor");
        listening(port).await;
        executors.push(executor);
    }
    (scheduler, executors, scheduler_port)
}

#[tokio::test]
async fn scheduler_and_two_executor_processes_run_the_seed_flow_from_the_shell() {
    let home = tempfile::tempdir().expect("temp dir");
    let (scheduler, executors, scheduler_port) = start_cluster(home.path()).await;
    let quickstart = manifest("examples/quickstart.sql").display().to_string();
    let files = manifest("examples/files").display().to_string();
    let cluster = format!("df://127.0.0.1:{scheduler_port}");
    let out = command(
        home.path(),
        &[
            "-q",
            "--emulator",
            "--cluster",
            &cluster,
            "--files",
            &files,
            "-f",
            &quickstart,
        ],
    )
    .output()
    .await
    .expect("the shell runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = std::fs::read_to_string(manifest("tests/integration/snapshots/quickstart.out"))
        .expect("snapshot");
    assert_eq!(stdout, expected, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));

    // The queries over files ran on the cluster: the scheduler planned their stages. A file
    // named in the query is a table too.
    let url_count = format!("SELECT count(*) AS n FROM '{files}/unrelated_questions.csv'");
    let out = command(
        home.path(),
        &[
            "-q",
            "--emulator",
            "--cluster",
            &cluster,
            "--files",
            &files,
            "--format",
            "csv",
            "-c",
            "CREATE ML_ENGINE e FROM bedrock USING api_key = 'k'",
            "-c",
            "CREATE MODEL m PREDICT answer USING engine = 'e', question_column = 'question'",
            "-c",
            "EXPLAIN FORMAT INDENT SELECT d.question, m.answer FROM files.unrelated_questions AS d JOIN m",
            "-c",
            &url_count,
        ],
    )
    .output()
    .await
    .expect("the shell runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("distributed_plan"), "{stdout}");
    assert!(stdout.ends_with("n\n2\n"), "{stdout}");
    assert!(
        stdout.contains("=========ResolvedStage[stage_id=1.0, partitions=1]========="),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(0));

    // A shell pointed at no scheduler says so and stops.
    let nobody = format!("df://127.0.0.1:{}", free_port());
    let out = command(
        home.path(),
        &["-q", "--emulator", "--cluster", &nobody, "-c", "SELECT 1"],
    )
    .output()
    .await
    .expect("the shell runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "Error: Invalid or Unsupported Configuration: No Ballista scheduler answers at {nobody}: start one with `datafusion-bedrock scheduler --port PORT`, or check the host and port\n"
        )
    );
    assert_eq!(out.status.code(), Some(1));

    for executor in executors {
        stop(executor).await;
    }
    stop(scheduler).await;
}
