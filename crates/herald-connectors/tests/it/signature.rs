//! Signatures checked by a library nobody here wrote: the Standard Webhooks project's
//! Python package (`pip install standardwebhooks`). The test captures the exact body and
//! headers a real receiver got from `Webhook::send` and hands them to the package's
//! `Webhook.verify`. A missing `python3` or package fails the test; it never skips.

use std::io::Write as _;
use std::process::{Command, Stdio};

use herald_connectors::Connector;

use crate::receiver::{Received, Scripted, TestReceiver};
use crate::webhook::{SECRET, message, request, webhook};

/// Exit status of [`VERIFY_PY`] when the package is not installed.
const MISSING_PACKAGE: i32 = 3;

/// Verifies stdin (the raw body) against the headers (argv[2], JSON) with the secret
/// (argv[1]). Exit 0: verified; 1: verification failed; 3: package missing.
const VERIFY_PY: &str = r#"
import json, sys
try:
    from standardwebhooks import Webhook, WebhookVerificationError
except ImportError as error:
    print(f"{error}: run `pip install standardwebhooks`", file=sys.stderr)
    sys.exit(3)
secret, headers = sys.argv[1], json.loads(sys.argv[2])
body = sys.stdin.buffer.read()
try:
    Webhook(secret).verify(body, headers)
except WebhookVerificationError as error:
    print(f"verification failed: {error}", file=sys.stderr)
    sys.exit(1)
"#;

/// Runs [`VERIFY_PY`]; returns its exit code and stderr.
fn python_verify(body: &[u8], headers: &[(String, String)]) -> (i32, String) {
    let headers = serde_json::to_string(
        &headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    let mut child = Command::new("python3")
        .args(["-c", VERIFY_PY, SECRET, &headers])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot run python3 ({error}): install Python 3, then `pip install standardwebhooks`")
        });
    child.stdin.take().unwrap().write_all(body).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let code = output.status.code().unwrap_or(-1);
    assert_ne!(
        code, MISSING_PACKAGE,
        "the Python package is missing: pip install standardwebhooks\n{stderr}"
    );
    (code, stderr)
}

async fn captured() -> Received {
    let mut receiver = TestReceiver::start(vec![Scripted::status(204)]).await;
    let message = message();
    let report = webhook(&receiver.url("/hook")).send(&request(&message)).await;
    assert_eq!(report.outcome.class(), "delivered", "{report:?}");
    receiver.next().await
}

#[tokio::test]
async fn the_reference_python_library_verifies_what_a_receiver_got() {
    let got = captured().await;
    let (code, stderr) = python_verify(&got.body, &got.headers);
    assert_eq!(code, 0, "python standardwebhooks rejected herald's signature: {stderr}");
}

#[tokio::test]
async fn the_reference_python_library_rejects_a_tampered_body() {
    let got = captured().await;
    let tampered = String::from_utf8(got.body.clone())
        .unwrap()
        .replace("checkout is down", "checkout is fine");
    assert_ne!(tampered.as_bytes(), got.body.as_slice());
    let (code, stderr) = python_verify(tampered.as_bytes(), &got.headers);
    assert_eq!(code, 1, "expected a verification failure: {stderr}");
    assert!(stderr.contains("No matching signature found"), "{stderr}");
}
