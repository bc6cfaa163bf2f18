//! Bad input of one kind across every field: an empty string where a bottle file needs a
//! value is refused, naming the field.

use bottle_core::catalog::Catalog;
use bottle_core::spec::BottleSpec;

/// An empty string where a bottle file needs a value is refused, naming the field: by the
/// file's parser (slug, image: empty there would silently mean "not given") or by validation.
#[test]
fn an_empty_string_in_a_bottle_file_is_an_error_naming_its_field() {
    let service = |field: &str, value: &str| {
        let mut s = toml::Table::from_iter([
            ("name".to_string(), "api".into()),
            ("upstream".to_string(), "https://api.example.com".into()),
            ("agent_env".to_string(), "API_URL".into()),
        ]);
        let mut inject = toml::Table::from_iter([
            ("header".to_string(), "x-api-key".into()),
            ("secret".to_string(), "API_KEY".into()),
        ]);
        match field {
            "header" | "secret" | "format" => {
                inject.insert(field.into(), value.into());
            }
            "paths" => {
                s.insert(field.into(), toml::Value::Array(vec![value.into()]));
            }
            _ => {
                s.insert(field.into(), value.into());
            }
        }
        s.insert(
            "inject".into(),
            toml::Value::Array(vec![toml::Value::Table(inject)]),
        );
        toml::Table::from_iter([(
            "services".to_string(),
            toml::Value::Array(vec![toml::Value::Table(s)]),
        )])
    };
    let list = |field: &str| {
        toml::Table::from_iter([(field.to_string(), toml::Value::Array(vec!["".into()]))])
    };
    let cases: Vec<(toml::Table, &str)> = vec![
        (toml::Table::from_iter([("slug".into(), "".into())]), "slug"),
        (
            toml::Table::from_iter([("image".into(), "".into())]),
            "image",
        ),
        (list("env"), "env"),
        (list("egress_allow"), "egress_allow"),
        (list("git_upstreams"), "git_upstreams"),
        (list("daemons"), "daemons"),
        (service("name", ""), "services[0].name"),
        (service("upstream", ""), "services[0].upstream"),
        (service("agent_env", ""), "services[0].agent_env"),
        (service("header", ""), "services[0].inject[0].header"),
        (service("secret", ""), "services[0].inject[0].secret"),
        (service("format", ""), "services[0].inject[0].format"),
        (service("paths", ""), "services[0].paths[0]"),
        (service("ca_file", ""), "services[0].ca_file"),
    ];
    let env = |_: &str| Some("value".to_string());
    for (table, field) in cases {
        let text = table.to_string();
        let refused = match toml::from_str::<BottleSpec>(&text) {
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains("must not be empty") || message.contains(field),
                    "{field}: the parse error says what is wrong: {message}"
                );
                // The parser points at the field's own line.
                let line = text
                    .lines()
                    .position(|l| l.starts_with(&format!("{field} ")))
                    .map(|i| i + 1);
                if let Some(line) = line {
                    assert!(
                        message.contains(&format!("line {line}")),
                        "{field}: {message}"
                    );
                }
                continue;
            }
            Ok(mut spec) => {
                if field != "slug" {
                    spec.slug = "ok".into();
                }
                spec.validate(&env)
                    .and_then(|()| spec.check_daemons(&Catalog::seed()))
                    .expect_err(&format!("{field} = \"\" is refused"))
            }
        };
        // The field, or a part of it (`git_upstreams[0].url`).
        assert!(
            refused.field() == field || refused.field().starts_with(&format!("{field}[")),
            "{field}: {refused} names {}",
            refused.field()
        );
    }
}
