//! Tries one escape chosen by config `attack` on every event of table `attack`, and passes
//! every other event through. An attack that works returns what it got as a row (the tests
//! assert no such row exists); one the sandbox refuses becomes the event's error.
//!
//! `attack = "trap-marked"` is a poison row instead: the guest traps on any event, of any
//! table, whose row has a text or integer column equal to config `mark`. `attack = "print"`
//! prints a line to stdout per event.
//!
//! Events passed through keep their row (the image after the change, before it for a
//! delete) and gain `_op`, as the lake checks of the end-to-end tests expect.

use std::hint::black_box;
use wrt_sdk::{ChangeEvent, Column, Config, OutputRecord, Transform, TransformError, Value};

struct Hostile {
    attack: String,
    target: String,
    mark: String,
}

impl Transform for Hostile {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Hostile {
            attack: config.get("attack").ok_or("config `attack` is required")?,
            target: config.get_or("target", "127.0.0.1:9"),
            mark: config.get_or("mark", ""),
        })
    }

    fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
        let table = event.source.table.clone();
        if self.attack == "trap-marked" && marked(&event, &self.mark) {
            panic!("hostile guest traps on the row marked {:?}", self.mark);
        }
        if self.attack == "print" {
            println!("hostile guest prints at offset {}", event.source.offset);
        }
        if table != "attack" || self.attack == "trap-marked" || self.attack == "print" {
            let op = event.op.code();
            return Ok(event
                .into_row()
                .map(|mut row| {
                    row.push(Column {
                        name: "_op".into(),
                        value: Value::Text(op.into()),
                    });
                    OutputRecord::new(table, row)
                })
                .into_iter()
                .collect());
        }
        let loot = match self.attack.as_str() {
            "file" => std::fs::read_to_string("/etc/passwd").map_err(denied)?,
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                if vars.is_empty() {
                    return Err(TransformError::new("denied", "the environment is empty"));
                }
                vars.join("\n")
            }
            "socket" => {
                std::net::TcpStream::connect(&self.target).map_err(denied)?;
                format!("connected to {}", self.target)
            }
            "loop" => loop {
                black_box(&self.attack);
            },
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "trap" => panic!("hostile guest traps on purpose"),
            other => {
                return Err(TransformError::new(
                    "bad-config",
                    format!("unknown attack {other:?}"),
                ));
            }
        };
        let row = vec![Column {
            name: "loot".into(),
            value: Value::Text(loot),
        }];
        Ok(vec![OutputRecord::new("escaped", row)])
    }
}

fn marked(event: &ChangeEvent, mark: &str) -> bool {
    let rows = event.before.iter().chain(&event.after);
    rows.flatten().any(|c| match &c.value {
        Value::Text(text) => text == mark,
        Value::Int(i) => i.to_string() == mark,
        _ => false,
    })
}

fn denied(e: std::io::Error) -> TransformError {
    TransformError::new("denied", e.to_string())
}

wrt_sdk::export_transform!(Hostile);
