//! Every engine call is bounded in time: a service that answers its ping and then stops
//! answering makes calls fail with `EngineUnavailable` once the bound passes, never hang. Runs
//! against a fake libpod service on a Unix socket, so it needs no engine.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use bottle_core::{ContainerRuntime, ErrorKind, LabelSelector};
use bottle_podman::PodmanRuntime;

/// Serves `listener`: answers pings as libpod does, holds every other request unanswered.
fn mute_service(listener: UnixListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(n) if n > 2 => continue,
                    _ => break,
                }
            }
            if request.contains("/_ping") {
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\nAPI-Version: 1.41\r\nLibpod-API-Version: 4.3.1\r\n\
                      Docker-Experimental: false\r\nCache-Control: no-cache\r\nPragma: no-cache\r\n\
                      Libpod-Buildah-Version: 1.28.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                );
            } else {
                // Never answer; keep the connection open for as long as the test runs.
                loop {
                    std::thread::park();
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_stops_answering_makes_calls_fail_not_hang() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bt-podman-mute-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the socket's directory");
    let socket = dir.join("podman.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).expect("bind the fake service");
    std::thread::spawn(move || mute_service(listener));

    let rt = PodmanRuntime::connect_to(&format!("unix://{}", socket.display()))
        .await
        .expect("the ping answers")
        .with_call_timeout(Duration::from_millis(300));
    let calls = async {
        [
            rt.list_networks(&LabelSelector::all()).await.map(drop),
            rt.inspect_container("bt-podman-mute").await.map(drop),
            rt.remove_container("bt-podman-mute").await,
        ]
    };
    // A safety net only: without the bound the calls would hang and this fails instead.
    let results = tokio::time::timeout(Duration::from_secs(60), calls)
        .await
        .expect("every call returns");
    for result in results {
        let err = result.expect_err("no answer is a failure");
        assert_eq!(err.kind(), ErrorKind::EngineUnavailable, "{err}");
        assert!(err.to_string().contains("no answer to"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
