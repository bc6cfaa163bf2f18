//! Tests of git upstreams: parsing a bottle file's entries and flags, and each validation rule.
use super::*;

#[track_caller]
fn check(upstreams: &[GitUpstreamSpec], expect: Result<(), &str>) {
    let env = [EnvEntry::parse("VALUED=s3cr3t").unwrap()];
    let lookup = |k: &str| (k == "GIT_TOKEN").then(|| "s3cr3t".to_string());
    match (validate(upstreams, &env, &lookup), expect) {
        (Ok(()), Ok(())) => {}
        (Err(e), Err(part)) => {
            assert!(e.to_string().contains(part), "{e} lacks {part:?}");
            assert_eq!(e.field(), "git_upstreams");
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

fn up(url: &str) -> GitUpstreamSpec {
    GitUpstreamSpec::from(url)
}

#[test]
fn names_come_from_the_url() {
    assert_eq!(name_from_url("https://h.test/org/app.git"), "app");
    assert_eq!(name_from_url("https://h.test/org/app/"), "app");
    assert_eq!(name_from_url("https://h.test/app"), "app");
    assert_eq!(name_from_url("https://h.test/"), "");
    assert_eq!(name_from_url("https://h.test"), "");
    let a = GitUpstreamSpec::parse_arg("lib=https://h.test/x/y.git");
    assert_eq!(
        (a.name.as_deref(), a.url.as_str()),
        (Some("lib"), "https://h.test/x/y.git")
    );
    let b = GitUpstreamSpec::parse_arg("https://h.test/x/y.git?a=b");
    assert_eq!(b.name, None);
}

#[test]
fn validation_names_the_field() {
    check(&[up("https://h.test/org/app.git")], Ok(()));
    check(
        &[up("https://h.test/org/app.git"), up("https://o.test/APP")],
        Err("git_upstreams[1].name: APP is declared twice"),
    );
    check(&[up("not a url")], Err("git_upstreams[0].url"));
    check(&[up("not a url")], Err("whitespace"));
    check(&[up("ftp-ish")], Err("not a git URL"));
    check(
        &[up("ssh://git@h.test/app.git")],
        Err("ssh is not supported"),
    );
    check(&[up("ssh://h.test/app.git")], Err("ssh is not supported"));
    check(&[up("git@h.test:org/app.git")], Err("ssh is not supported"));
    check(&[up("git://h.test/app.git")], Err("https://"));
    check(&[up("http://h.test/app.git")], Err("insecure_http"));
    check(
        &[GitUpstreamSpec {
            insecure_http: true,
            ..up("http://10.0.0.1:8080/app.git")
        }],
        Ok(()),
    );
    check(
        &[up("https://user:s3cr3t@h.test/app.git")],
        Err("git_upstreams[0].url: carries credentials"),
    );
    check(&[up("https://s3cr3t@h.test/app.git")], Err("token ="));
    check(&[up("https://h.test")], Err("no repository path"));
    check(&[up("https://h.test:0/a.git")], Err("port"));
    check(
        &[up("https://h.test/a%20b.git")],
        Err("git_upstreams[0].name: \"a%20b\" (taken from the URL"),
    );
    for bad in [".hidden", "-x", "a/b", "..", "a..b", "x.git", ""] {
        check(
            &[GitUpstreamSpec {
                name: Some(bad.into()),
                ..up("https://h.test/a.git")
            }],
            Err("git_upstreams[0].name"),
        );
    }
    for good in ["app", "App_2", "my-lib.rs", "v1.0"] {
        check(
            &[GitUpstreamSpec {
                name: Some(good.into()),
                ..up("https://h.test/a.git")
            }],
            Ok(()),
        );
    }
    let with_token = |t: &str| GitUpstreamSpec {
        token: Some(t.into()),
        ..up("https://h.test/a.git")
    };
    check(&[with_token("GIT_TOKEN")], Ok(()));
    check(
        &[with_token("MISSING")],
        Err("git_upstreams[0].token: MISSING is not set"),
    );
    check(&[with_token("VALUED")], Err("has a value in env"));
    check(&[with_token("ghp_s3cr3t x")], Err("not a bare env key"));
    let with_push = |p: &[&str]| GitUpstreamSpec {
        push: Some(p.iter().map(|s| s.to_string()).collect()),
        ..up("https://h.test/a.git")
    };
    check(
        &[with_push(&["refs/heads/agent/*", "refs/tags/v*"])],
        Ok(()),
    );
    check(&[with_push(&[])], Ok(()));
    check(
        &[with_push(&["refs/heads/a", "heads/main"])],
        Err("git_upstreams[0].push: [1]"),
    );
    check(&[with_push(&["refs/heads/a b"])], Err("refs/"));
    check(
        &[GitUpstreamSpec {
            ca_file: Some("relative.pem".into()),
            ..up("https://h.test/a.git")
        }],
        Err("git_upstreams[0].ca_file"),
    );
    check(
        &[GitUpstreamSpec {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..up("https://h.test/a.git")
        }],
        Err("not a file"),
    );
}

#[test]
fn a_bottle_file_takes_strings_and_tables() {
    #[derive(Deserialize)]
    struct F {
        git_upstreams: Vec<GitUpstreamSpec>,
    }
    let f: F = toml::from_str(
        r#"
git_upstreams = ["https://h.test/org/plain.git"]
"#,
    )
    .unwrap();
    assert_eq!(f.git_upstreams, vec![up("https://h.test/org/plain.git")]);
    let f: F = toml::from_str(
        r#"
[[git_upstreams]]
url = "https://h.test/org/plain.git"

[[git_upstreams]]
name = "app"
url = "https://h.test/org/app.git"
token = "APP_GIT_TOKEN"
push = ["refs/heads/agent/*"]
ca_file = "/etc/ssl/ca.pem"
insecure_http = true
"#,
    )
    .unwrap();
    assert_eq!(f.git_upstreams[0].name(), "plain");
    let app = &f.git_upstreams[1];
    assert_eq!(app.token.as_deref(), Some("APP_GIT_TOKEN"));
    assert_eq!(
        app.planned(),
        PlannedGitUpstream {
            name: "app".into(),
            url: "https://h.test/org/app.git".into(),
            token_key: Some("APP_GIT_TOKEN".into()),
            push: Some(vec!["refs/heads/agent/*".into()]),
            ca_file: Some(format!("{CA_DIR}/app.pem")),
            insecure_http: true,
        }
    );
    let e = toml::from_str::<F>("[[git_upstreams]]\nurl = \"https://h.test/a\"\ntokn = \"A\"\n")
        .err()
        .unwrap();
    assert!(e.message().contains("tokn"), "{e}");
    // A spec written out reads back the same.
    let json = serde_json::to_string(&f.git_upstreams).unwrap();
    let back: Vec<GitUpstreamSpec> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, f.git_upstreams);
}
