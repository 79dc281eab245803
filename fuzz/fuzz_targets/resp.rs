//! Feeds arbitrary bytes to the RESP request parser, as one buffer and as a stream cut
//! at a point the input chooses: it must never panic, never claim more bytes than it
//! was given, and find the same requests however the bytes arrive. Every request found
//! also goes through the command checks, which must not panic either.
#![no_main]

use gctr::resp::command::{self, Args};
use gctr::resp::parser::{self, Limits};
use libfuzzer_sys::fuzz_target;
use std::ops::Range;

/// Small limits, so the fuzzer reaches them.
const LIMITS: Limits = Limits {
    max_args: 16,
    max_bulk: 256,
    max_inline: 256,
};

/// Every whole request in `data`, as byte strings, and how the parse ended.
fn requests(data: &[u8]) -> (Vec<Vec<Vec<u8>>>, Option<parser::ProtocolError>) {
    let mut found = Vec::new();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut pos = 0;
    loop {
        match parser::parse(&data[pos..], &LIMITS, &mut ranges) {
            Ok(Some(n)) => {
                assert!(n > 0 && pos + n <= data.len());
                let rest = &data[pos..];
                assert!(ranges.len() <= LIMITS.max_args);
                for r in &ranges {
                    assert!(r.start <= r.end && r.end <= n);
                }
                if !ranges.is_empty() {
                    let _ = command::parse(Args::new(rest, &ranges));
                }
                found.push(ranges.iter().map(|r| rest[r.clone()].to_vec()).collect());
                pos += n;
            }
            Ok(None) => return (found, None),
            Err(e) => return (found, Some(e)),
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, data)) = input.split_first() else {
        return;
    };
    let (whole, whole_error) = requests(data);
    // The same bytes in two deliveries: whatever the first part holds whole is found
    // the same, and never an error the whole input does not have.
    let cut = (cut as usize).min(data.len());
    let (first, first_error) = requests(&data[..cut]);
    assert!(first.len() <= whole.len());
    assert_eq!(first[..], whole[..first.len()]);
    if first_error.is_some() {
        assert_eq!(first_error, whole_error);
    }
});
