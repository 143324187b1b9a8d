//! The packaging files in `deploy/` say what the README promises (they cannot run here: no
//! systemd as PID 1 and no container engine on the CI machine): the unit's command line is one
//! the binary accepts, and the hardening and data-directory options are present.

use std::process::Command;

fn deploy(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(name)).unwrap()
}

#[test]
fn the_systemd_unit_is_hardened_and_its_command_line_parses() {
    let unit = deploy("ferrotrue.service");
    for option in [
        "DynamicUser=yes",
        "StateDirectory=ferrotrue",
        "StateDirectoryMode=0700",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "UMask=0077",
        "Environment=FERROTRUE_DATA_DIR=/var/lib/ferrotrue",
    ] {
        assert!(unit.lines().any(|l| l.trim() == option), "missing {option}");
    }
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_eq!(args, ["--env-file", "/etc/ferrotrue.env", "serve"]);
    // The same flags, with an env file that is missing, fail as configuration errors (exit 2),
    // not as unknown arguments (clap's exit 2 would say "unexpected argument").
    let out = Command::new(env!("CARGO_BIN_EXE_ferrotrue"))
        .args(["--env-file", "/nonexistent/ferrotrue.env", "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/ferrotrue.env") && !err.contains("unexpected argument"), "{err}");
}

#[test]
fn the_dockerfile_builds_a_static_binary_into_an_empty_image() {
    let docker = deploy("Dockerfile");
    assert!(docker.contains("cargo build --release --locked --bin ferrotrue"));
    assert!(docker.contains("FROM scratch"));
    assert!(docker.contains("FERROTRUE_DATA_DIR=/data") && docker.contains("GOTRUE_API_HOST=0.0.0.0"));
    assert!(docker.contains("USER 65532:65532"), "not root in the container");
}
