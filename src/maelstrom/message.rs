//! Maelstrom messages: where an input line becomes a request gctr understands, or an
//! error to answer, and where replies become JSON lines.
//!
//! A line is `{"src", "dest", "body": {"type", "msg_id"?, "in_reply_to"?, ...}}`. Parsing
//! checks the envelope, then the type against the types gctr knows (an unknown one is
//! `not-supported`), then the body's fields and their types with serde (a missing or
//! mistyped field is `malformed-request`), then the values themselves: names follow the
//! naming rules, totals fit an i64, and a gossip frame passes the same checks as a frame
//! off the wire, because it is re-encoded and decoded by the binary codec.

use crate::codec::{self, Frame};
use crate::crdt::validate_node_name;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Maelstrom's error codes that gctr sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 10, definite: the message type is not one gctr handles.
    NotSupported = 10,
    /// 11, definite: the node cannot serve this yet (no `init` so far).
    TemporarilyUnavailable = 11,
    /// 12, definite: the message is not well formed (missing field, wrong type, bad value).
    MalformedRequest = 12,
    /// 14, definite: the operation was refused and did not happen (an `add` that would
    /// take the counter's total of increments or decrements past i64::MAX).
    Abort = 14,
}

/// The message types gctr understands. Any other type gets `not-supported`.
pub const KNOWN_TYPES: [&str; 7] = [
    "init",
    "topology",
    "add",
    "read",
    "replicate",
    "gossip_status",
    "gossip",
];

/// A request body, by type. Fields other than those named here are ignored.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Init {
        node_id: String,
        node_ids: Vec<String>,
    },
    /// Answered, otherwise ignored: peers are every other node from `init`.
    Topology {
        topology: HashMap<String, Vec<String>>,
    },
    /// Adds `delta` (negative: a decrement) to the `default` counter.
    Add {
        delta: i64,
    },
    Read,
    /// Whole p and n vectors (node id → total) from a peer of the reference protocol.
    Replicate {
        #[serde(default)]
        p_counters: BTreeMap<String, u64>,
        #[serde(default)]
        n_counters: BTreeMap<String, u64>,
    },
    GossipStatus,
    /// An engine frame between gctr nodes; never answered.
    Gossip {
        frame: Frame,
    },
}

/// A well-formed request and who to answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    pub src: String,
    /// The node id the sender addressed: replies come from it, even before `init`.
    pub dest: String,
    pub msg_id: Option<u64>,
    pub request: Request,
}

/// Where an error reply goes: the sender and the `msg_id` it gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub src: String,
    pub msg_id: u64,
    /// The node id the sender addressed, when the message named one.
    pub dest: Option<String>,
}

/// What one input line is.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    Request(Incoming),
    /// A reply (a body with `in_reply_to`). gctr sends no requests, so it only logs these;
    /// answering them could start two nodes bouncing errors at each other.
    Reply {
        src: String,
        kind: String,
    },
    /// A line that is not a request gctr can serve. It is answered when it carries a
    /// sender and a `msg_id`, and logged in any case.
    Invalid {
        reply_to: Option<ReplyTo>,
        code: ErrorCode,
        text: String,
    },
}

/// Parses one input line (without its newline).
pub fn parse(line: &[u8]) -> Parsed {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return invalid(None, ErrorCode::MalformedRequest, format!("not JSON: {e}")),
    };
    let src = value.get("src").and_then(Value::as_str).map(str::to_owned);
    let body = value.get("body").and_then(Value::as_object);
    let msg_id = body.and_then(|b| b.get("msg_id")).and_then(Value::as_u64);
    let dest = value.get("dest").and_then(Value::as_str).map(str::to_owned);
    let reply_to = src.clone().zip(msg_id).map(|(src, msg_id)| ReplyTo {
        src,
        msg_id,
        dest: dest.clone(),
    });
    let malformed = |text: String| invalid(reply_to.clone(), ErrorCode::MalformedRequest, text);
    let Some(src) = src else {
        return malformed("the message has no string `src`".into());
    };
    let Some(dest) = dest else {
        return malformed("the message has no string `dest`".into());
    };
    let Some(body) = body else {
        return malformed("the message has no object `body`".into());
    };
    let Some(kind) = body.get("type").and_then(Value::as_str) else {
        return malformed("the body has no string `type`".into());
    };
    if body.contains_key("in_reply_to") {
        return Parsed::Reply {
            src,
            kind: kind.to_owned(),
        };
    }
    if let Some(id) = body.get("msg_id") {
        if msg_id.is_none() {
            return malformed(format!("`msg_id` {id} is not an unsigned integer"));
        }
    }
    if !KNOWN_TYPES.contains(&kind) {
        return invalid(
            reply_to,
            ErrorCode::NotSupported,
            format!("message type {kind:?} is not supported"),
        );
    }
    let request = match Request::deserialize(Value::Object(body.clone())) {
        Ok(r) => r,
        Err(e) => return malformed(format!("bad {kind:?} message: {e}")),
    };
    if let Err(text) = check(&request) {
        return malformed(format!("bad {kind:?} message: {text}"));
    }
    Parsed::Request(Incoming {
        src,
        dest,
        msg_id,
        request,
    })
}

fn invalid(reply_to: Option<ReplyTo>, code: ErrorCode, text: String) -> Parsed {
    Parsed::Invalid {
        reply_to,
        code,
        text,
    }
}

/// The checks serde cannot make: names, ranges, and the frame rules of the codec.
fn check(request: &Request) -> Result<(), String> {
    match request {
        Request::Init { node_id, node_ids } => {
            for id in node_ids.iter().chain([node_id]) {
                validate_node_name(id).map_err(|e| e.to_string())?;
            }
            if !node_ids.contains(node_id) {
                return Err(format!("`node_ids` does not list `node_id` {node_id:?}"));
            }
            Ok(())
        }
        Request::Add { delta } if *delta == i64::MIN => Err(format!(
            "`delta` must be within ±{}; {delta} is not",
            i64::MAX
        )),
        Request::Replicate {
            p_counters,
            n_counters,
        } => {
            for (node, total) in p_counters.iter().chain(n_counters) {
                validate_node_name(node).map_err(|e| e.to_string())?;
                if *total > i64::MAX as u64 {
                    return Err(format!(
                        "total {total} of node {node:?} is above {}",
                        i64::MAX
                    ));
                }
            }
            Ok(())
        }
        Request::Gossip { frame } => {
            let bytes = codec::encode(frame);
            codec::decode(&bytes, codec::MAX_PAYLOAD_LIMIT)
                .map(drop)
                .map_err(|e| format!("bad frame: {e}"))
        }
        _ => Ok(()),
    }
}

/// A message body to send, before the runtime stamps `msg_id`, `src` and the envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    /// The sender to stamp while this node has no id yet (an error before `init`): the
    /// id the request was addressed to.
    pub src: Option<String>,
    pub dest: String,
    pub body: Map<String, Value>,
}

impl Outgoing {
    /// A reply of `kind` to `msg_id` (when the request had one) with extra `fields`.
    pub fn reply(dest: &str, msg_id: Option<u64>, kind: &str, fields: Value) -> Outgoing {
        let mut body = Map::new();
        body.insert("type".into(), kind.into());
        if let Some(id) = msg_id {
            body.insert("in_reply_to".into(), id.into());
        }
        if let Value::Object(fields) = fields {
            body.extend(fields);
        }
        Outgoing {
            src: None,
            dest: dest.to_owned(),
            body,
        }
    }

    pub fn error(reply_to: &ReplyTo, code: ErrorCode, text: &str) -> Outgoing {
        Outgoing {
            src: reply_to.dest.clone(),
            ..Outgoing::reply(
                &reply_to.src,
                Some(reply_to.msg_id),
                "error",
                json!({ "code": code as u16, "text": text }),
            )
        }
    }

    pub fn gossip(dest: &str, frame: &Frame) -> Outgoing {
        let mut body = Map::new();
        body.insert("type".into(), "gossip".into());
        body.insert(
            "frame".into(),
            serde_json::to_value(frame).unwrap_or(Value::Null),
        );
        Outgoing {
            src: None,
            dest: dest.to_owned(),
            body,
        }
    }

    /// The whole line (without newline), stamped with a message id and sent from `me`,
    /// this node's id once `init` gave it one.
    pub fn to_line(&self, me: Option<&str>, msg_id: u64) -> String {
        let mut body = self.body.clone();
        body.insert("msg_id".into(), msg_id.into());
        let src = me.or(self.src.as_deref()).unwrap_or_default();
        json!({ "src": src, "dest": self.dest, "body": body }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(line: &str) -> (Option<ReplyTo>, ErrorCode) {
        match parse(line.as_bytes()) {
            Parsed::Invalid { reply_to, code, .. } => (reply_to, code),
            other => panic!("expected an error for {line}, got {other:?}"),
        }
    }

    fn to_c1(msg_id: u64) -> Option<ReplyTo> {
        Some(ReplyTo {
            src: "c1".into(),
            msg_id,
            dest: Some("n1".into()),
        })
    }

    #[test]
    fn parses_the_pn_counter_requests() {
        let add = parse(br#"{"src":"c1","dest":"n1","body":{"type":"add","delta":-3,"msg_id":4}}"#);
        assert_eq!(
            add,
            Parsed::Request(Incoming {
                src: "c1".into(),
                dest: "n1".into(),
                msg_id: Some(4),
                request: Request::Add { delta: -3 },
            })
        );
        let replicate = parse(
            br#"{"src":"n2","dest":"n1","body":{"type":"replicate","p_counters":{"n1":0,"n2":10}}}"#,
        );
        let Parsed::Request(Incoming {
            msg_id: None,
            request:
                Request::Replicate {
                    p_counters,
                    n_counters,
                },
            ..
        }) = replicate
        else {
            panic!("replicate did not parse: {replicate:?}");
        };
        assert_eq!(p_counters.get("n2"), Some(&10));
        assert!(n_counters.is_empty());
    }

    #[test]
    fn sorts_bad_lines_into_the_right_error_codes() {
        assert_eq!(error_of("not json"), (None, ErrorCode::MalformedRequest));
        assert_eq!(
            error_of(r#"{"src":"c1","dest":"n1","body":{"type":"add","msg_id":1}}"#),
            (to_c1(1), ErrorCode::MalformedRequest)
        );
        assert_eq!(
            error_of(r#"{"src":"c1","dest":"n1","body":{"type":"add","delta":1.5,"msg_id":2}}"#),
            (to_c1(2), ErrorCode::MalformedRequest)
        );
        assert_eq!(
            error_of(
                r#"{"src":"c1","dest":"n1","body":{"type":"add","delta":-9223372036854775808,"msg_id":3}}"#
            ),
            (to_c1(3), ErrorCode::MalformedRequest)
        );
        assert_eq!(
            error_of(r#"{"src":"c1","dest":"n1","body":{"type":"frob","msg_id":4}}"#),
            (to_c1(4), ErrorCode::NotSupported)
        );
        assert_eq!(
            error_of(r#"{"src":"c1","body":{"type":"read","msg_id":5}}"#),
            (
                Some(ReplyTo {
                    src: "c1".into(),
                    msg_id: 5,
                    dest: None,
                }),
                ErrorCode::MalformedRequest
            )
        );
        assert_eq!(
            error_of(r#"{"src":"c1","dest":"n1","body":{"msg_id":6}}"#),
            (to_c1(6), ErrorCode::MalformedRequest)
        );
        assert_eq!(
            error_of(
                r#"{"src":"n2","dest":"n1","body":{"type":"replicate","p_counters":{"n2":-1},"msg_id":7}}"#
            ),
            (
                Some(ReplyTo {
                    src: "n2".into(),
                    msg_id: 7,
                    dest: Some("n1".into()),
                }),
                ErrorCode::MalformedRequest
            )
        );
        assert_eq!(
            error_of(r#"{"dest":"n1","body":{"type":"read","msg_id":8}}"#),
            (None, ErrorCode::MalformedRequest)
        );
    }

    #[test]
    fn a_gossip_frame_must_pass_the_codec_rules() {
        let bad_name = r#"{"src":"n2","dest":"n1","body":{"type":"gossip","frame":
            {"type":"push","delta":[{"origin":{"node":"","incarnation":0},"from":0,"to":1,
            "entries":[{"counter":"default","p":1,"n":0,"version":1}]}]}}}"#;
        assert_eq!(error_of(bad_name), (None, ErrorCode::MalformedRequest));
        let frame = Frame::Syn { digest: Vec::new() };
        let line = Outgoing::gossip("n1", &frame).to_line(Some("n2"), 9);
        let Parsed::Request(Incoming {
            request: Request::Gossip { frame: parsed },
            msg_id: Some(9),
            ..
        }) = parse(line.as_bytes())
        else {
            panic!("gossip line did not parse: {line}");
        };
        assert_eq!(parsed, frame);
    }

    #[test]
    fn replies_are_recognised_and_not_answered() {
        assert_eq!(
            parse(br#"{"src":"n2","dest":"n1","body":{"type":"error","in_reply_to":3,"code":10}}"#),
            Parsed::Reply {
                src: "n2".into(),
                kind: "error".into()
            }
        );
    }
}
