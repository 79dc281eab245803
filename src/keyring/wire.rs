//! Where [`KeysMessage`]s become bytes, in the payload of a `keys` frame: the sender's
//! name, its mode, the record's version and whether it is enforced, the key ids the
//! sender holds, then the keys themselves (none in an advert). Counts are single bytes
//! checked against [`MAX_KEYS`]; anything else is a [`CodecError`].

use super::cluster::{KeysMessage, Version};
use super::shared::Mode;
use super::{Key, KeyId, KEY_LEN, MAX_KEYS};
use crate::codec::{put_str, put_varint, CodecError, Decoder, Sink};
use crate::crdt::MAX_NODE_NAME_BYTES;
use crate::member::NodeName;

pub(crate) fn put_keys(out: &mut impl Sink, msg: &KeysMessage) {
    put_str(out, msg.from.as_str());
    out.put(&[msg.mode as u8, u8::from(msg.enforced)]);
    put_varint(out, msg.version.counter);
    put_str(out, msg.version.by.as_str());
    out.put(&[msg.held.len() as u8]);
    for id in &msg.held {
        out.put(&id.0);
    }
    out.put(&[msg.keys.len() as u8]);
    for key in &msg.keys {
        out.put(key.bytes());
    }
}

pub(crate) fn decode_keys(r: &mut Decoder) -> Result<KeysMessage, CodecError> {
    let from = name(r)?;
    let flags = r.bytes(2)?;
    let mode = Mode::from_byte(flags[0]).ok_or(CodecError::Invalid("unknown keyring mode"))?;
    let enforced = match flags[1] {
        0 => false,
        1 => true,
        _ => return Err(CodecError::Invalid("bad enforced flag")),
    };
    let version = Version {
        counter: r.varint()?,
        by: name(r)?,
    };
    let held = (0..count(r)?)
        .map(|_| {
            let b = r.bytes(4)?;
            Ok(KeyId([b[0], b[1], b[2], b[3]]))
        })
        .collect::<Result<Vec<KeyId>, CodecError>>()?;
    let keys = (0..count(r)?)
        .map(|_| {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(r.bytes(KEY_LEN)?);
            Ok(Key(k))
        })
        .collect::<Result<Vec<Key>, CodecError>>()?;
    if held.is_empty() {
        return Err(CodecError::Invalid("a keyring message naming no key"));
    }
    Ok(KeysMessage {
        from,
        mode,
        version,
        enforced,
        held,
        keys,
    })
}

fn name(r: &mut Decoder) -> Result<NodeName, CodecError> {
    let s = r.string(MAX_NODE_NAME_BYTES)?;
    NodeName::new(&s).map_err(|e| CodecError::BadName(e.0))
}

fn count(r: &mut Decoder) -> Result<usize, CodecError> {
    let n = usize::from(r.bytes(1)?[0]);
    if n > MAX_KEYS {
        return Err(CodecError::Invalid("more keys than a keyring holds"));
    }
    Ok(n)
}
