//! Feeds arbitrary bytes to the frame decoder, whole and as a stream: it must never
//! panic or over-allocate, and whatever it accepts must encode back to a frame that
//! decodes to itself.
#![no_main]

use gctr::codec::{self, DEFAULT_MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = codec::decode(data, DEFAULT_MAX_PAYLOAD) {
        let bytes = codec::encode(&frame);
        assert_eq!(bytes.len(), codec::encoded_len(&frame));
        assert_eq!(codec::decode(&bytes, DEFAULT_MAX_PAYLOAD), Ok(frame));
    }
    let _ = codec::read_frame(&mut &data[..], DEFAULT_MAX_PAYLOAD);
    if let Some((&kind, payload)) = data.split_first() {
        if let Some(kind) = codec::FrameType::ALL.get(kind as usize % codec::FrameType::COUNT) {
            let _ = codec::decode_payload(*kind, payload);
        }
    }
});
