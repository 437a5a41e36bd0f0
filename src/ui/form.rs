//! Console forms: an `application/x-www-form-urlencoded` body turned into
//! the JSON body the admin API takes, so that the API's own parser checks
//! it and names the field at fault; and the values a form is drawn with.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Error;

/// A posted form, fields in order (a field may repeat: checkbox groups).
#[derive(Debug, Clone, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

/// How a form field becomes a JSON member.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// A string, sent even when empty (clears a description).
    Text,
    /// A string, left out when empty ("keep what is stored").
    Keep,
    /// A string, or null when empty.
    TextOrNull,
    /// A whole number, left out when empty.
    Number,
    /// A whole number, or null when empty ("the default").
    NumberOrNull,
    /// A checkbox: true when ticked, false otherwise.
    Check,
    /// A three-way select: `on` true, `off` false, empty null ("the default").
    BoolOrNull,
    /// A text area, one item per line (or comma-separated).
    Lines,
    /// A group of checkboxes with one name.
    Many,
}

/// Form fields that hold secrets: never drawn back into a page.
fn is_secret(name: &str) -> bool {
    name.starts_with("secret.") || matches!(name, "eab_hmac_key" | "token" | "password" | "csrf")
}

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, serde_urlencoded::de::Error> {
        Ok(Self {
            fields: serde_urlencoded::from_bytes(body)?,
        })
    }

    /// The first value of a field, or "".
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of a field.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The fields under `prefix.` (a credential's `config.` or `secret.`),
    /// non-empty ones only, as a JSON object.
    pub fn group(&self, prefix: &str) -> Map<String, Value> {
        self.fields
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(prefix)?.strip_prefix('.')?;
                let v = v.trim();
                (!v.is_empty()).then(|| (name.to_string(), Value::String(v.to_string())))
            })
            .collect()
    }

    /// The JSON members of `spec`, from this form.
    pub fn json(&self, spec: &[(&str, Field)]) -> Result<Map<String, Value>, Error> {
        let mut body = Map::new();
        for &(name, field) in spec {
            let text = self.get(name).trim();
            let value = match field {
                Field::Text => Value::String(text.to_string()),
                Field::Keep if text.is_empty() => continue,
                Field::Keep => Value::String(text.to_string()),
                Field::TextOrNull if text.is_empty() => Value::Null,
                Field::TextOrNull => Value::String(text.to_string()),
                Field::Number | Field::NumberOrNull if !text.is_empty() => {
                    Value::from(text.parse::<i64>().map_err(|_| {
                        Error::invalid(name, format!("{name} must be a whole number"))
                    })?)
                }
                Field::Number => continue,
                Field::NumberOrNull => Value::Null,
                Field::Check => Value::Bool(!text.is_empty()),
                Field::BoolOrNull => match text {
                    "" => Value::Null,
                    "on" => Value::Bool(true),
                    "off" => Value::Bool(false),
                    _ => {
                        return Err(Error::invalid(
                            name,
                            format!("{name} must be on, off or empty"),
                        ));
                    }
                },
                Field::Lines => Value::from(
                    text.split(['\n', ','])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>(),
                ),
                Field::Many => Value::from(self.all(name)),
            };
            body.insert(name.to_string(), value);
        }
        Ok(body)
    }

    /// The API's settings type from `body`, through the API's own parser.
    pub fn settings<T: DeserializeOwned>(body: Map<String, Value>) -> Result<T, Error> {
        let bytes = serde_json::to_vec(&Value::Object(body))
            .map_err(|e| Error::malformed(format!("the form could not be read: {e}")))?;
        crate::admin::parse_json(&bytes)
    }

    /// The API's settings type from the fields of `spec`: [`Self::json`],
    /// then [`Self::settings`].
    pub fn read<T: DeserializeOwned>(&self, spec: &[(&str, Field)]) -> Result<T, Error> {
        Self::settings(self.json(spec)?)
    }
}

/// The values a form is drawn with: a stored object's, or what was posted
/// (secrets left out, so a refused form never echoes one back).
#[derive(Debug, Clone, Default)]
pub struct Values(BTreeMap<String, String>);

impl Values {
    /// From an API view: strings, numbers, ticked checkboxes ("on") and
    /// lists (one item per line).
    pub fn of<T: serde::Serialize>(view: &T) -> Self {
        let mut values = BTreeMap::new();
        if let Ok(Value::Object(members)) = serde_json::to_value(view) {
            for (k, v) in members {
                let text = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(true) => "on".into(),
                    Value::Array(items) => items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    Value::Object(inner) => {
                        // A credential's config: `config.NAME`.
                        for (name, v) in inner {
                            if let Value::String(s) = v {
                                values.insert(format!("{k}.{name}"), s);
                            }
                        }
                        continue;
                    }
                    Value::Bool(false) | Value::Null => continue,
                };
                values.insert(k, text);
            }
        }
        Self(values)
    }

    /// From a posted form, without its secrets.
    pub fn posted(form: &Form) -> Self {
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &form.fields {
            if is_secret(k) {
                continue;
            }
            values
                .entry(k.clone())
                .and_modify(|e| {
                    e.push('\n');
                    e.push_str(v);
                })
                .or_insert_with(|| v.clone());
        }
        Self(values)
    }

    /// With defaults where nothing is set.
    pub fn or(mut self, defaults: &[(&str, &str)]) -> Self {
        for (k, v) in defaults {
            self.0.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
        self
    }

    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// A grouped field, `PREFIX.NAME` (a credential's `config.server`).
    pub fn field(&self, prefix: &str, name: &str) -> &str {
        self.get(&format!("{prefix}.{name}"))
    }

    /// A checkbox is ticked.
    pub fn checked(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }

    /// A select or radio has this value.
    pub fn is(&self, name: &str, value: &str) -> bool {
        self.get(name) == value
    }

    /// A select has the value `prefix` + `value` (`instance:` + a name).
    pub fn is_joined(&self, name: &str, prefix: &str, value: &str) -> bool {
        self.get(name)
            .strip_prefix(prefix)
            .is_some_and(|rest| rest == value)
    }

    /// A checkbox group or list holds this item.
    pub fn has(&self, name: &str, item: &str) -> bool {
        self.get(name).lines().any(|l| l == item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_become_the_api_body() {
        let form = Form::parse(
            b"name=a&description=&dns_ttl=60&api_timeout_s=&preferred=on&caa_identities=x.test%0Ay.test&allowed_challenges=dns-01&allowed_challenges=http-01&eab_hmac_key=",
        )
        .unwrap();
        let body = form
            .json(&[
                ("name", Field::Text),
                ("description", Field::Text),
                ("dns_ttl", Field::Number),
                ("api_timeout_s", Field::Number),
                ("preferred", Field::Check),
                ("allow_wildcard", Field::Check),
                ("caa_identities", Field::Lines),
                ("allowed_challenges", Field::Many),
                ("eab_hmac_key", Field::Keep),
            ])
            .unwrap();
        assert_eq!(
            Value::Object(body),
            serde_json::json!({
                "name": "a", "description": "", "dns_ttl": 60, "preferred": true,
                "allow_wildcard": false, "caa_identities": ["x.test", "y.test"],
                "allowed_challenges": ["dns-01", "http-01"],
            })
        );
    }

    #[test]
    fn a_bad_number_names_its_field() {
        let form = Form::parse(b"dns_ttl=soon").unwrap();
        let e = form.json(&[("dns_ttl", Field::Number)]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("dns_ttl"));
    }

    #[test]
    fn posted_values_leave_secrets_out() {
        let form =
            Form::parse(b"name=n&secret.key=c2VjcmV0&eab_hmac_key=hk&config.server=127.0.0.1")
                .unwrap();
        let values = Values::posted(&form);
        assert_eq!(values.get("name"), "n");
        assert_eq!(values.get("config.server"), "127.0.0.1");
        assert_eq!(values.get("secret.key"), "");
        assert_eq!(values.get("eab_hmac_key"), "");
    }
}
