//! JSON-schema structured output: the answer is written as the schema's JSON, its structure
//! (braces, keys, quotes, commas) written for the model and only the values sampled — string
//! contents from the tokens that may stand inside a JSON string, the choice between another
//! array item and the array's end from those two tokens. The answer always parses and always
//! has every property the schema lists, in the order of its `required` list.
//!
//! Known shapes: objects whose properties are strings (`maxLength` honoured), arrays of
//! strings (`maxItems`, at least one item), and nested objects of those. Any other schema is
//! refused with a message naming the part, rather than answered loosely.

use serde_json::Value;

use super::{Allowed, Error, Session};

/// The most characters a string gets when the schema sets no `maxLength`.
const STRING_LIMIT: usize = 200;
/// The most items an array gets when the schema sets no `maxItems`.
const ITEMS_LIMIT: usize = 12;

/// A schema as the writer walks it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// An object: its properties in order.
    Object(Vec<(String, Shape)>),
    /// A string of at most this many characters.
    Text(usize),
    /// An array of strings: at most this many items of at most this many characters.
    List(usize, usize),
}

impl Shape {
    /// The shape of a JSON schema, or why it is not one this writer knows.
    pub fn of(schema: &Value) -> Result<Shape, Error> {
        Self::at(schema, "schema")
    }

    fn at(schema: &Value, path: &str) -> Result<Shape, Error> {
        let limit = |key: &str, default: usize| {
            schema[key]
                .as_u64()
                .map_or(default, |n| usize::try_from(n).unwrap_or(default))
        };
        match schema["type"].as_str() {
            Some("string") => Ok(Shape::Text(limit("maxLength", STRING_LIMIT))),
            Some("array") if schema["items"]["type"] == "string" => Ok(Shape::List(
                limit("maxItems", ITEMS_LIMIT).max(1),
                schema["items"]["maxLength"]
                    .as_u64()
                    .map_or(STRING_LIMIT, |n| usize::try_from(n).unwrap_or(STRING_LIMIT)),
            )),
            Some("object") => {
                let properties = schema["properties"].as_object().ok_or_else(|| {
                    Error::Request(format!("{path}: an object schema needs properties"))
                })?;
                // In the order `required` lists them (JSON objects carry no order of their own),
                // then the others.
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut keys: Vec<&String> = properties.keys().collect();
                keys.sort_by_key(|k| required.iter().position(|r| r == k).unwrap_or(usize::MAX));
                keys.into_iter()
                    .map(|k| Ok((k.clone(), Self::at(&properties[k], &format!("{path}.{k}"))?)))
                    .collect::<Result<_, Error>>()
                    .map(Shape::Object)
            }
            other => Err(Error::Request(format!(
                "{path}: response_format json_schema supports objects, strings and arrays of strings, not {}",
                other.map_or("a schema without a type".to_string(), |t| format!(
                    "type {t:?}"
                ))
            ))),
        }
    }
}

/// Writes `shape` as the answer; `"length"` when the token budget forced values short.
pub fn write<F: FnMut(&str)>(
    session: &mut Session<'_, F>,
    shape: &Shape,
    max_tokens: usize,
) -> Result<&'static str, Error> {
    let mut writer = Writer {
        quote: single(session, "\"")?,
        comma: single(session, ",")?,
        close: single(session, "]")?,
        max_tokens,
        cut: false,
    };
    writer.value(session, shape)?;
    Ok(if writer.cut { "length" } else { "stop" })
}

fn single<F: FnMut(&str)>(session: &Session<'_, F>, text: &str) -> Result<u32, Error> {
    match session.encode(text)?.as_slice() {
        [id] => Ok(*id),
        _ => Err(Error::Model(format!(
            "the vocabulary has no single token for {text:?}: structured output needs one"
        ))),
    }
}

struct Writer {
    quote: u32,
    comma: u32,
    close: u32,
    max_tokens: usize,
    cut: bool,
}

impl Writer {
    fn value<F: FnMut(&str)>(
        &mut self,
        s: &mut Session<'_, F>,
        shape: &Shape,
    ) -> Result<(), Error> {
        match shape {
            Shape::Object(properties) => {
                s.force("{")?;
                for (i, (key, value)) in properties.iter().enumerate() {
                    let sep = if i > 0 { ", " } else { "" };
                    s.force(&format!("{sep}{}: ", Value::String(key.clone())))?;
                    self.value(s, value)?;
                }
                s.force("}")
            }
            Shape::Text(limit) => self.text(s, *limit),
            Shape::List(items, limit) => {
                s.force("[")?;
                for n in 0..*items {
                    if n > 0 {
                        let (comma, close) = (self.comma, self.close);
                        let next = if self.spent(s) {
                            close
                        } else {
                            s.sample(Allowed::OneOf(&[comma, close]))?
                        };
                        if next == close {
                            return s.accept(close);
                        }
                        s.accept(comma)?;
                        s.force(" ")?;
                    }
                    self.text(s, *limit)?;
                }
                s.force("]")
            }
        }
    }

    /// Whether the budget is spent: what is left of the structure is closed without sampling.
    fn spent<F: FnMut(&str)>(&mut self, s: &Session<'_, F>) -> bool {
        if s.generated() >= self.max_tokens {
            self.cut = true;
        }
        self.cut
    }

    fn text<F: FnMut(&str)>(&mut self, s: &mut Session<'_, F>, limit: usize) -> Result<(), Error> {
        s.accept(self.quote)?;
        let mut content: Vec<u32> = Vec::new();
        let quote = self.quote;
        loop {
            if self.spent(s) {
                break;
            }
            let next = s.sample(Allowed::InString(quote))?;
            if next == quote {
                break;
            }
            content.push(next);
            if s.decode(&content)?.chars().count() > limit {
                break;
            }
            s.accept(next)?;
        }
        s.accept(self.quote)
    }
}
