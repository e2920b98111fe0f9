//! The secret class, closed (issue 15): a property test puts a random hostile secret, as any JSON
//! type, into every secret-bearing field and nested credential of every kind (the client secret and
//! password, the director's client secret, also as a director credential handed over as JSON text,
//! the S3 secret key, the password in a URL's userinfo, the password of a proxy) and runs the built
//! binaries against repave-sim servers whose error pages echo the request back: so the secret comes
//! back URL-encoded (a password grant's form), base64-encoded (`Authorization: Basic`) and
//! JSON-escaped. No form of it ([`leak_forms`]) may appear on stdout, on stderr or in any file.

use crate::common::{StepOutput, Trap, assert_no_leak, leak_forms, run_step};
use proptest::prelude::*;
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use serde_json::{Value, json};

/// The JSON shapes a secret may arrive in.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Text,
    /// An unquoted number in a vars file (the secret is then a long distinctive number).
    Number,
    /// A string holding a JSON document, as a `((credential))` stored as text.
    JsonText,
    List,
    Object,
}

fn shapes() -> impl Strategy<Value = Shape> {
    prop_oneof![Just(Shape::Text), Just(Shape::Number), Just(Shape::JsonText), Just(Shape::List), Just(Shape::Object)]
}

/// `secret` in `shape`; for [`Shape::Number`] the secret must be digits.
fn shaped(shape: Shape, secret: &str) -> Value {
    match shape {
        Shape::Text => json!(secret),
        Shape::Number => serde_json::from_str(secret).expect("a numeric secret"),
        Shape::JsonText => json!(json!({"client_secret": secret, "password": secret}).to_string()),
        Shape::List => json!([secret]),
        Shape::Object => json!({"value": secret}),
    }
}

/// One field that can carry a secret: how to build the request around it, and which requests the
/// simulator answers with an echo of themselves.
struct Case {
    name: &'static str,
    step: &'static str,
    echo: &'static str,
    /// Whether the field takes any shape (a URL's password is always text).
    any_shape: bool,
    /// Whether, as text, the secret is sent (and echoed); else validation refuses the request.
    sent: bool,
    build: fn(&RunningSim, Value, &str) -> Value,
}

fn ca(sim: &RunningSim) -> String {
    std::fs::read_to_string(sim.ca_cert_path()).unwrap()
}

fn fleet(sim: &RunningSim, extra: Value) -> Value {
    let mut source = json!({"kind": "fleet", "api_url": sim.url(), "uaa_url": sim.url(), "ca_cert": ca(sim),
                            "http": {"attempts": 1}});
    source.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"source": source})
}

fn stemcell(sim: &RunningSim, extra: Value) -> Value {
    let mut source = json!({"kind": "stemcell", "name": "n", "api_url": sim.url(), "ca_cert": ca(sim),
                            "http": {"attempts": 1}});
    source.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"source": source})
}

fn opsman(sim: &RunningSim, login: Value) -> Value {
    let mut source = json!({"kind": "opsman", "url": sim.url(), "ca_cert": ca(sim), "http": {"attempts": 1}});
    source.as_object_mut().unwrap().extend(login.as_object().unwrap().clone());
    json!({"source": source})
}

/// `https://repave:<secret>@127.0.0.1:PORT{path}`, the secret percent-encoded as a URL carries it.
fn with_password(base: &str, path: &str, secret: &str) -> String {
    let mut url = reqwest::Url::parse(&format!("{base}{path}")).unwrap();
    url.set_username("repave").unwrap();
    url.set_password(Some(secret)).unwrap();
    url.to_string()
}

fn director(sim: &RunningSim, secret: Value) -> Value {
    json!({"url": sim.url(), "client": "repave", "client_secret": secret})
}

const CASES: &[Case] = &[
    Case {
        name: "fleet client_secret",
        step: "check",
        echo: "/oauth/token",
        any_shape: true,
        sent: true,
        build: |sim, v, _| fleet(sim, json!({"client_id": "repave", "client_secret": v})),
    },
    Case {
        name: "fleet password",
        step: "check",
        echo: "/oauth/token",
        any_shape: true,
        sent: true,
        build: |sim, v, _| fleet(sim, json!({"username": "ops", "password": v})),
    },
    Case {
        name: "fleet director.client_secret",
        step: "check",
        echo: "/oauth/token",
        any_shape: true,
        sent: true,
        build: |sim, v, _| {
            fleet(sim, json!({"client_id": "repave", "client_secret": "not-the-secret", "director": director(sim, v)}))
        },
    },
    Case {
        name: "stemcell director.client_secret",
        step: "out",
        echo: "/oauth/token",
        any_shape: true,
        sent: true,
        build: |sim, v, _| {
            let mut request = stemcell(sim, json!({"director": director(sim, v)}));
            request["params"] = json!({"from": "stemcell"});
            request
        },
    },
    Case {
        name: "stemcell director as JSON text",
        step: "out",
        echo: "/oauth/token",
        any_shape: false,
        sent: false,
        build: |sim, _, secret| {
            let mut request = stemcell(sim, json!({"director": director(sim, json!(secret)).to_string()}));
            request["params"] = json!({"from": "stemcell"});
            request
        },
    },
    Case {
        name: "opsman client_secret",
        step: "check",
        echo: "*/oauth/token",
        any_shape: true,
        sent: true,
        build: |sim, v, _| opsman(sim, json!({"client_id": "repave", "client_secret": v})),
    },
    Case {
        name: "opsman password",
        step: "check",
        echo: "*/oauth/token",
        any_shape: true,
        sent: true,
        build: |sim, v, _| opsman(sim, json!({"username": "admin", "password": v})),
    },
    Case {
        name: "stemcell opsman.client_secret",
        step: "out",
        echo: "*/oauth/token",
        any_shape: true,
        sent: true,
        build: |sim, v, _| {
            let login = json!({"url": sim.url(), "client_id": "repave", "client_secret": v, "ca_cert": ca(sim)});
            let mut request = stemcell(sim, json!({"opsman": login}));
            request["params"] = json!({"from": "stemcell"});
            request
        },
    },
    Case {
        name: "fleet opsman.password",
        step: "out",
        echo: "/uaa/oauth/token",
        any_shape: true,
        sent: true,
        build: |sim, v, _| {
            let login = json!({"url": sim.url(), "username": "admin", "password": v, "ca_cert": ca(sim)});
            let mut request =
                fleet(sim, json!({"client_id": "repave", "client_secret": "repave-secret", "opsman": login}));
            request["params"] = json!({"dry_run": true});
            request
        },
    },
    Case {
        name: "stemcell auth.secret_key",
        step: "check",
        echo: "*",
        any_shape: true,
        sent: true,
        build: |sim, v, _| stemcell(sim, json!({"auth": {"access_key": "AKID", "secret_key": v}})),
    },
    Case {
        name: "stemcell api_url password",
        step: "check",
        echo: "*",
        any_shape: false,
        sent: true,
        build: |sim, _, secret| stemcell(sim, json!({"api_url": with_password(sim.url(), "", secret)})),
    },
    Case {
        name: "fleet uaa_url password",
        step: "check",
        echo: "*",
        any_shape: false,
        sent: true,
        build: |sim, _, secret| {
            fleet(sim, json!({"uaa_url": with_password(sim.url(), "", secret), "client_id": "c", "client_secret": "x"}))
        },
    },
    Case {
        name: "kubernetes feed_url password",
        step: "check",
        echo: "*",
        any_shape: false,
        sent: true,
        build: |sim, _, secret| {
            let feed = with_password(sim.url(), "/release", secret);
            json!({"source": {"kind": "kubernetes", "feed_url": feed, "ca_cert": ca(sim), "http": {"attempts": 1}}})
        },
    },
];

/// Runs one case with the secret in `shape`; the step must not leak it in any form.
fn run_case(case: &Case, shape: Shape, text_secret: &str, number_secret: &str) -> StepOutput {
    let shape = if case.any_shape { shape } else { Shape::Text };
    let secret = if matches!(shape, Shape::Number) { number_secret } else { text_secret };
    let sim = RunningSim::start("");
    sim.add_fault(FaultRule::new(case.echo, FaultAction::Echo { code: 401 }));
    let work = tempfile::tempdir().unwrap();
    let stemcell = work.path().join("stemcell");
    std::fs::create_dir(&stemcell).unwrap();
    std::fs::write(stemcell.join("version"), "1.506").unwrap();
    std::fs::write(stemcell.join("url"), "https://bosh.io/x.tgz").unwrap();
    std::fs::write(stemcell.join("stemcell.tgz"), "a tarball Ops Manager would be sent").unwrap();
    let request = (case.build)(&sim, shaped(shape, secret), secret);
    let dir = (case.step != "check").then_some(work.path());
    let out = run_step(case.step, &request.to_string(), dir, &[]);
    assert_no_leak(&out, dir, secret);
    if matches!(shape, Shape::Text) && case.sent && case.echo != "*" {
        let echoed = |path: &str| sim.requests().iter().any(|r| r.path == path && r.fault.as_deref() == Some("echo"));
        let paths = if case.echo.starts_with('*') { vec!["/oauth/token", "/uaa/oauth/token"] } else { vec![case.echo] };
        assert!(paths.into_iter().any(echoed), "{}: the secret never went out", case.name);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn no_secret_of_any_shape_leaks_in_any_form(
        text in "S3NT[a-zA-Z0-9 /@+&=%\"\\\\<>é:?#~-]{6,14}",
        number in "9[0-9]{12}",
        shapes in prop::collection::vec(shapes(), CASES.len()),
    ) {
        for (case, shape) in CASES.iter().zip(shapes) {
            let out = run_case(case, shape, &text, &number);
            prop_assert_eq!(out.status, 1, "{}: {}", case.name, out.stderr);
        }
    }
}

/// Every case, once in every shape it takes, with a fixed secret: the matrix the property samples.
#[test]
fn every_field_in_every_shape() {
    let text = "S3NT p@ss/w+rd&\"q\"=é";
    for case in CASES {
        for shape in [Shape::Text, Shape::Number, Shape::JsonText, Shape::List, Shape::Object] {
            run_case(case, shape, text, "9731946285017");
            if !case.any_shape {
                break;
            }
        }
    }
}

/// A proxy's password (from the environment Concourse sets) is a secret too.
#[test]
fn a_proxy_password_does_not_leak() {
    let secret = "S3NT pr0xy/p@ss";
    let trap = Trap::start();
    let proxy = with_password(&trap.url(""), "", secret).replace("https://", "http://");
    let sim = RunningSim::start("");
    let request = stemcell(&sim, json!({}));
    let out = run_step("check", &request.to_string(), None, &[("https_proxy", &proxy)]);
    out.assert_fails_with(&["error"]);
    assert_no_leak(&out, None, secret);
    assert!(!trap.hits().is_empty(), "the request went through the proxy");
}

#[test]
fn the_harness_finds_every_form() {
    let forms = leak_forms("S3NT p@ss/w+rd");
    for expected in ["S3NT p@ss/w+rd", "S3NT+p%40ss%2Fw%2Brd", "S3NT%20p%40ss%2Fw%2Brd", "s3nt%20p%40ss%2fw%2brd"] {
        assert!(forms.contains(&expected.to_string()), "{expected} not in {forms:?}");
    }
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("repave:S3NT p@ss/w+rd");
    assert!(forms.iter().any(|f| basic.contains(f.as_str())), "{basic} vs {forms:?}");
}
