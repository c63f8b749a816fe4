//! Cerbos's CheckResources API cases (`api/check_resources/*.yaml`), replayed over HTTP and
//! over gRPC against Gatehouse servers configured as Cerbos's server tests are, and compared
//! with the answers of the real Cerbos 0.55 (`golden/api/check_resources/*.json`).
//!
//! Successful answers are compared after normalisation (no `cerbosCallId`, empty fields
//! dropped, derived roles as a set, outputs and validation errors sorted). Errors are
//! compared on the status and the whole body over HTTP, and on the code, the message and
//! the violation details over gRPC.

use prost::Message;
use serde_json::Value;

use gatehouse::api::pb::buf::validate::Violations;
use gatehouse::api::pb::google::rpc::Status as RpcStatus;
use gatehouse::api::{decode_check_resources, encode_check_resources, encode_violations};

use crate::api_server::{conformance_settings, normalise, start};
use crate::util::{corpus_dir, files_with_ext, json_file, yaml_docs};

/// Cases (`<case stem> <transport>`) we knowingly answer differently, with the reason.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// The violations in a gRPC status's details, as JSON (as Cerbos's HTTP body has them).
fn grpc_details(status: &tonic::Status) -> Option<Value> {
    if status.details().is_empty() {
        return None;
    }
    let rpc = RpcStatus::decode(status.details()).ok()?;
    let any = rpc.details.first()?;
    let violations = Violations::decode(any.value.as_slice()).ok()?;
    Some(encode_violations(&violations))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_check_resources_cases() {
    let Some(corpus) = corpus_dir("api") else {
        return;
    };
    let (store, settings) = conformance_settings(&corpus).await;
    let servers = start(store, settings).await;
    let mut grpc = servers.grpc().await;

    let (mut passed, mut failed, mut known) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut unexpectedly_passing = Vec::new();
    for path in files_with_ext(&corpus.join("api/check_resources"), "yaml") {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let case = yaml_docs(&path).remove(0);
        let golden = json_file(&corpus.join(format!("golden/api/check_resources/{stem}.json")));
        let input = &case["checkResources"]["input"];
        let want_status = golden["httpStatus"].as_u64().unwrap() as u16;
        let want = &golden["response"];
        let is_error = want_status != 200;

        // HTTP.
        let (status, body) = servers.check_http(input).await;
        let http_problem = if is_error {
            (status != want_status || body != *want)
                .then(|| format!("want {want_status} {want}\n  got  {status} {body}"))
        } else {
            let (w, g) = (normalise(want), normalise(&body));
            (status != 200 || w != g).then(|| format!("want 200 {w}\n  got  {status} {g}"))
        };

        // gRPC.
        let request = decode_check_resources(input.to_string().as_bytes())
            .expect("case input is a valid CheckResourcesRequest")
            .to_pb();
        let grpc_problem = match grpc.check_resources(request).await {
            Ok(resp) if !is_error => {
                let resp = resp.into_inner();
                let call_id_ok = resp.cerbos_call_id.len() == 26;
                let (w, g) = (normalise(want), normalise(&encode_check_resources(&resp)));
                (w != g || !call_id_ok)
                    .then(|| format!("want {w}\n  got  {g} (call id {:?})", resp.cerbos_call_id))
            }
            Ok(resp) => Some(format!(
                "want error {want}\n  got  {}",
                encode_check_resources(&resp.into_inner())
            )),
            Err(s) if is_error => {
                let want_details = want.pointer("/details/0/violations").cloned();
                let got = (s.code() as i64, s.message().to_string(), grpc_details(&s));
                let expected = (
                    want["code"].as_i64().unwrap_or(-1),
                    want["message"].as_str().unwrap_or_default().to_string(),
                    want_details,
                );
                (got != expected).then(|| format!("want {expected:?}\n  got  {got:?}"))
            }
            Err(s) => Some(format!("want {want}\n  got  status {s:?}")),
        };

        for (transport, problem) in [("http", http_problem), ("grpc", grpc_problem)] {
            let label = format!("{stem} {transport}");
            let is_known = KNOWN_DIFFERENCES.iter().any(|(c, _)| *c == label);
            match (problem, is_known) {
                (None, false) => passed += 1,
                (None, true) => unexpectedly_passing.push(label),
                (Some(_), true) => known += 1,
                (Some(p), false) => {
                    failed += 1;
                    failures.push(format!(
                        "{label} ({}): {p}",
                        case["description"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
    }
    for f in &failures {
        println!("MISMATCH {f}");
    }
    for (label, reason) in KNOWN_DIFFERENCES {
        println!("known difference {label}: {reason}");
    }
    println!("api: {passed} passed, {failed} failed, {known} skipped");
    assert!(
        unexpectedly_passing.is_empty(),
        "known differences that now agree with Cerbos (remove them from KNOWN_DIFFERENCES): {unexpectedly_passing:?}"
    );
    assert_eq!(
        failed,
        0,
        "API cases disagree with Cerbos:\n{}",
        failures.join("\n")
    );
    assert!(passed >= 28, "too few API cases ran: {passed}");
}
